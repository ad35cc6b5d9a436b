"""Screens demo-task variants (issue 20) in PyTorch: LoRA (fp32, r=16 all-linear, PEFT) on examples/base with
the demo's recipe (batch 8, lr 5e-3 cosine, 5% warmup, prompt loss weight 0.1), then greedy answers to the
first held-out prompts scored like `vktune evaluate --json-keys` (form, every field, fields right per key).
A fast stand-in for a vktune run, not a replacement: the README's demo numbers come from vktune.
--variant rewrites the demo's records (examples/demo/make_data.sh: book, chapter, verse, text) into the variants
screened for the README: F is the record before issue 20 (book, chapter, verse, first and last word of the verse);
A puts the verse first and its reference right before "JSON:" (a near-constant distance from the reference to the
record's book/chapter/verse), with F's record; B is A with the demo's record.
Pinned: torch 2.15.0 (CPU), transformers 5.23.0, peft 0.21.2, tokenizers 0.23.3.
  python bench/demo_task_screen.py --train examples/demo/train.jsonl --test examples/demo/test.jsonl --steps 200 --variant B
"""
import argparse, json, math, os, random, time
import torch
from peft import LoraConfig, get_peft_model
from tokenizers import Tokenizer
from transformers import AutoModelForCausalLM

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
p = argparse.ArgumentParser()
p.add_argument("--train", required=True); p.add_argument("--test", required=True)
p.add_argument("--steps", type=int, default=400); p.add_argument("--lr", type=float, default=5e-3)
p.add_argument("--r", type=int, default=16); p.add_argument("--bs", type=int, default=8)
p.add_argument("--plw", type=float, default=0.1); p.add_argument("--n", type=int, default=40)
p.add_argument("--variant", choices=["demo", "F", "A", "B"], default="demo")
p.add_argument("--model", default=os.path.join(ROOT, "examples", "base"))
a = p.parse_args()
torch.manual_seed(1); random.seed(1); torch.set_num_threads(1)
tok = Tokenizer.from_file(os.path.join(a.model, "tokenizer.json"))
config = json.load(open(os.path.join(a.model, "config.json")))
bos, eos, pad = config["bos_token_id"], config["eos_token_id"], config["pad_token_id"]
model = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.float32)
model = get_peft_model(model, LoraConfig(r=a.r, lora_alpha=2 * a.r, target_modules="all-linear", lora_dropout=0.0))
encode = lambda s: tok.encode(s, add_special_tokens=False).ids


def rewrite(record):
    if a.variant == "demo": return record
    ref, text, tail = record["prompt"].split("\n")
    fields = json.loads(record["completion"])
    if a.variant in ("F", "A"):
        words = text.split(" ")
        del fields["text"]
        fields["first"], fields["last"] = ("".join(c for c in w if c.isalpha()) for w in (words[0], words[-1]))
    if a.variant == "F": return {"prompt": record["prompt"], "completion": json.dumps(fields)}
    return {"prompt": "\n".join([text, ref, tail]), "completion": json.dumps(fields)}


keys = ["book", "chapter", "verse", "first", "last"] if a.variant in ("F", "A") else ["book", "chapter", "verse", "text"]
data = [([bos] + encode(r["prompt"]), encode(r["completion"]) + [eos]) for r in map(rewrite, map(json.loads, open(a.train)))]
opt = torch.optim.AdamW([q for q in model.parameters() if q.requires_grad], lr=a.lr, weight_decay=0.0)
warm = max(1, int(0.05 * a.steps))
sched = torch.optim.lr_scheduler.LambdaLR(
    opt, lambda s: (s + 1) / warm if s < warm else 0.5 * (1 + math.cos(math.pi * (s - warm) / max(1, a.steps - warm))))
order, t0 = [], time.time()
model.train()
for step in range(a.steps):
    if len(order) < a.bs: order += random.sample(range(len(data)), len(data))
    batch = [data[order.pop()] for _ in range(a.bs)]
    length = max(len(x) + len(y) for x, y in batch)
    ids = torch.full((a.bs, length), pad); weight = torch.zeros(a.bs, length)  # [batch, length]
    for i, (x, y) in enumerate(batch):
        ids[i, :len(x) + len(y)] = torch.tensor(x + y)
        weight[i, 1:len(x)] = a.plw; weight[i, len(x):len(x) + len(y)] = 1.0
    logits = model(input_ids=ids).logits[:, :-1]
    nll = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1),
                                            reduction="none").view(a.bs, length - 1)
    loss = (nll * weight[:, 1:]).sum() / weight[:, 1:].sum()
    opt.zero_grad(); loss.backward(); opt.step(); sched.step()
    if step % 50 == 0 or step == a.steps - 1: print(f"step {step} loss {loss.item():.3f} {time.time() - t0:.0f}s", flush=True)
model.eval()
tests = [rewrite(json.loads(l)) for l in open(a.test)][:a.n]
form = every = 0; per_key = {k: 0 for k in keys}; outputs = []
with torch.no_grad():
    for r in tests:
        ids = torch.tensor([[bos] + encode(r["prompt"])])
        out = model.generate(input_ids=ids, max_new_tokens=96, do_sample=False, eos_token_id=eos, pad_token_id=pad)
        text = tok.decode(out[0, ids.shape[1]:].tolist(), skip_special_tokens=True)
        outputs.append(text); expected = json.loads(r["completion"])
        try:
            got = json.loads(text.split("\n")[0])
        except ValueError:
            continue
        if not isinstance(got, dict) or not all(k in got for k in keys): continue
        form += 1; right = [got[k] == expected[k] for k in keys]
        for k, ok in zip(keys, right): per_key[k] += ok
        every += all(right)
n = len(tests)
print(f"form {form / n:.1%} every field {every / n:.1%} fields {sum(per_key.values()) / (n * len(keys)):.1%} "
      f"per key {', '.join(f'{k} {v / n:.0%}' for k, v in per_key.items())} distinct {len(set(outputs))} of {n}")
for r, o in list(zip(tests, outputs))[:4]: print(" ", repr(r["prompt"]), "->", o)
