"""A small preference set for --objective dpo/orpo from the demo task (examples/demo/train.jsonl).

Each pair keeps the record's prompt; chosen is its correct JSON record, rejected the same record with
one field corrupted (cycling: the text with a wrong last word, a wrong verse number, the text with a
wrong first word, the wrong book), so chosen and rejected differ in a few tokens only. Deterministic: no randomness.
    python3 examples/demo/make_preference_data.py > examples/demo/preference.jsonl
"""
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
PAIRS = int(sys.argv[1]) if len(sys.argv) > 1 else 64

records = [json.loads(line) for line in open(os.path.join(HERE, "train.jsonl"), encoding="utf-8")][:PAIRS + 1]
for i, record in enumerate(records[:PAIRS]):
    fields = json.loads(record["completion"])
    other = json.loads(records[i + 1]["completion"])
    wrong = dict(fields)
    kind = i % 4
    words = fields["text"].split(" ")
    if kind == 0:
        last = other["text"].split(" ")[-1]
        words[-1] = last if last != words[-1] else "saying,"
        wrong["text"] = " ".join(words)
    elif kind == 1:
        wrong["verse"] = fields["verse"] + 7
    elif kind == 2:
        words[0] = "Behold" if words[0] != "Behold" else "And"
        wrong["text"] = " ".join(words)
    else:
        wrong["book"] = "Ex" if fields["book"] != "Ex" else "Ge"
    # The demo's records are json.dumps with its default separators: keep the same spelling.
    print(json.dumps({"prompt": record["prompt"], "chosen": json.dumps(fields), "rejected": json.dumps(wrong)}))
