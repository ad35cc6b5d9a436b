"""Can a base model copy from its context (issue 20)? examples/demo/copy_probe.jsonl's held-out demo
verses, each asked as "REF\nVERSE\nREF\n" (the line format of examples/make_copy_rows.py): greedy
copies (the first generated line equals the verse) and, teacher-forced, the verse's NLL and top-1
accuracy per token on its first reading and its second. A model that copies finds the second reading far easier
(top-1 near 100%); examples/base before issue 20's rows: 0/20 copies, the second reading no easier.
Pinned: torch 2.15.0 (CPU), transformers 5.23.0.
  python bench/demo_copy_probe.py MODEL_DIR... [--limit 20] [--tokenizer FILE] [--rows FILE]
      checkpoint-N/ folders have no tokenizer: --tokenizer WORK_DIR/tokenizer/tokenizer.json.
      --rows WORK_DIR/corpus/kjv-rows-valid.jsonl (examples/make_copy_rows.py) adds the top-1 accuracy on
      the book and chapter tokens of every later reference of the first 40 rows (copies of the previous
      reference's, mostly): the copying that pretraining on these rows rewards first.
"""
import json, os, sys
import torch
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
torch.set_num_threads(1)


def probe(model_dir, rows, tokenizer_file=None):
    tok = PreTrainedTokenizerFast(tokenizer_file=tokenizer_file or os.path.join(model_dir, "tokenizer.json"))
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    bos = [tok.convert_tokens_to_ids("<|begin_of_text|>")]
    copies = 0
    stats = {"first": [0.0, 0, 0], "second": [0.0, 0, 0]}  # NLL sum, top-1 hits, tokens
    for row in rows:
        # The verse and its reference, whatever the file's layout; asked in the rows' line format.
        ref_line, verse = [l for l in row["prompt"].split("\n") if l][-1], row["completion"].strip()
        head = tok.encode(ref_line + "\n", add_special_tokens=False)
        verse_ids = tok.encode(verse, add_special_tokens=False)
        mid = tok.encode("\n" + ref_line + "\n", add_special_tokens=False)
        ids = bos + head + verse_ids + mid + verse_ids
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0]
        logp = torch.log_softmax(logits, -1)
        for name, start in (("first", len(bos) + len(head)), ("second", len(bos) + len(head) + len(verse_ids) + len(mid))):
            for i in range(start, start + len(verse_ids)):
                stats[name][0] -= logp[i - 1, ids[i]].item()
                stats[name][1] += int(logp[i - 1].argmax().item() == ids[i])
                stats[name][2] += 1
        prompt = bos + head + verse_ids + mid
        with torch.no_grad():
            out = model.generate(torch.tensor([prompt]), max_new_tokens=len(verse_ids) + 3, do_sample=False)
        text = tok.decode(out[0, len(prompt):].tolist())
        copies += text.split("\n")[0].strip() == verse.strip()
    line = f"{model_dir}: greedy copies {copies}/{len(rows)}"
    for name, (nll, hits, n) in stats.items():
        line += f"; {name} reading NLL {nll / n:.2f} top-1 {100 * hits / n:.0f}%"
    print(line, flush=True)


def reference_probe(model_dir, rows_file, tokenizer_file=None):
    tok = PreTrainedTokenizerFast(tokenizer_file=tokenizer_file or os.path.join(model_dir, "tokenizer.json"))
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    hits = count = 0
    with open(rows_file) as f:
        texts = [json.loads(l)["text"] for l in f][:40]
    for text in texts:
        ids, targets = [tok.convert_tokens_to_ids("<|begin_of_text|>")], []
        for i, line in enumerate(text.split("\n")):
            piece = tok.encode(line + "\n", add_special_tokens=False)
            if i % 2 == 0 and i > 0:  # a later reference: its tokens before ':' (book, chapter)
                tokens = tok.convert_ids_to_tokens(piece)
                targets += range(len(ids), len(ids) + (tokens.index(":") if ":" in tokens else 0))
            ids += piece
        ids = ids[:256]
        with torch.no_grad():
            predicted = model(torch.tensor([ids])).logits[0].argmax(-1)
        for t in (t for t in targets if t < len(ids)):
            hits += int(predicted[t - 1].item() == ids[t]); count += 1
    print(f"{model_dir}: book and chapter of later references top-1 {100 * hits / count:.0f}% of {count}", flush=True)


def main():
    args = sys.argv[1:]
    options = {"--limit": "20", "--tokenizer": None, "--rows": None}
    for name in options:
        if name in args:
            i = args.index(name); options[name] = args[i + 1]; del args[i:i + 2]
    limit = int(options["--limit"])
    with open(os.path.join(ROOT, "examples", "demo", "copy_probe.jsonl")) as f:
        rows = [json.loads(l) for l in f][:limit]
    for model_dir in args:
        probe(model_dir, rows, options["--tokenizer"])
        if options["--rows"]:
            reference_probe(model_dir, options["--rows"], options["--tokenizer"])


if __name__ == "__main__":
    main()
