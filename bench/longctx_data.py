#!/usr/bin/env python3
"""Data for bench/longctx.md: continuous King James passages (Debian's bible-kjv, as
examples/make_corpus.sh uses) cut into rows of ~1100 tokens of examples/base's tokenizer.
    long_train.jsonl  {"text"}: 400 passages from Genesis on (training at 1024 positions)
    long_eval.jsonl   {"prompt", "completion"}: 24 passages from the last 6000 verses (after the training ones), the prompt the
                      first 255 tokens (+ BOS: positions 0-255), the completion the rest, so that
                      --prompt-loss-weight 0 scores positions 256-1023 only
Usage: /work/venv/bin/python bench/longctx_data.py OUTPUT_DIR (tokenizers 0.23.3)."""
import json
import os
import subprocess
import sys

from tokenizers import Tokenizer

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
here = os.path.dirname(os.path.abspath(__file__))
tokenizer = Tokenizer.from_file(os.path.join(here, "..", "examples", "base", "tokenizer.json"))
verses = subprocess.run(["bible", "-f", "Gen1:1-Rev22:21"], capture_output=True, text=True, check=True).stdout
verses = [line.strip() for line in verses.splitlines() if line.strip()]


def passages(lines, count):
    rows, text = [], ""
    for line in lines:
        text += (" " if text else "") + line
        if len(tokenizer.encode(text, add_special_tokens=False).ids) >= 1100:
            rows.append(text)
            text = ""
            if len(rows) == count:
                break
    return rows


with open(os.path.join(out, "long_train.jsonl"), "w") as f:
    for text in passages(verses, 400):
        f.write(json.dumps({"text": text}) + "\n")
with open(os.path.join(out, "long_eval.jsonl"), "w") as f:
    for text in passages(verses[-6000:], 24):
        encoding = tokenizer.encode(text, add_special_tokens=False)
        cut = encoding.offsets[255][0]
        f.write(json.dumps({"prompt": text[:cut], "completion": text[cut:]}) + "\n")
print("wrote", out)
