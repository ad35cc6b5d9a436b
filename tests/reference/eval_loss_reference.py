#!/work/venv/bin/python
"""Golden numbers for `vktune evaluate --loss`: the weighted loss of examples/base on a few lines,
computed by transformers' LlamaForCausalLM (fp32, one example at a time, no padding).

Pinned: torch 2.15.0, transformers 5.23.0, tokenizers 0.23.3, safetensors 0.8.0.
Usage:
  /work/venv/bin/python tests/reference/eval_loss_reference.py           # (re)writes the golden
  /work/venv/bin/python tests/reference/eval_loss_reference.py --verify  # checks the committed one

Tokens and weights follow the trainer (engine/train/dataset.cpp): BOS (weight 0) when the
tokenizer's post-processor adds it; the segments of an example (prompt, completion; or the text)
tokenized as growing prefixes without special tokens, prompt tokens weighing --prompt-loss-weight
(0.1) and completion/text tokens 1; EOS (weight 1) appended. The loss predicting token t+1 from
position t weighs w[t+1]: loss = sum w*CE / sum w over every example, perplexity = exp(loss).
"""
import argparse
import json
import math
import os
import sys

import tokenizers
import torch
import transformers
from transformers import LlamaForCausalLM

PINNED = {"torch": "2.15.0", "transformers": "5.23.0", "tokenizers": "0.23.3"}
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODEL = os.path.join(REPO, "examples", "base")
DATA = os.path.join(REPO, "tests", "data", "eval_loss", "base.jsonl")
GOLDEN = os.path.join(REPO, "tests", "data", "eval_loss", "base.golden.json")
PROMPT_LOSS_WEIGHT = 0.1


def check_versions():
    found = {"torch": torch.__version__.split("+")[0], "transformers": transformers.__version__,
             "tokenizers": tokenizers.__version__}
    for name, version in PINNED.items():
        if found[name] != version:
            sys.exit(f"{name} {found[name]} found, {version} pinned")


def tokenize(tokenizer, config, example):
    if "text" in example:
        segments = [(example["text"], True)]
    else:
        segments = [(example["prompt"], False), (example["completion"], True)]
    ids, weights = [], []
    with_special = tokenizer.encode("x", add_special_tokens=True).ids
    without = tokenizer.encode("x", add_special_tokens=False).ids
    if len(with_special) > len(without) and with_special[0] == config["bos_token_id"]:
        ids.append(config["bos_token_id"])
        weights.append(0.0)
    prefix, previous = "", []
    for text, completion in segments:
        prefix += text
        current = tokenizer.encode(prefix, add_special_tokens=False).ids
        common = 0
        while common < len(previous) and common < len(current) and previous[common] == current[common]:
            common += 1
        if common < len(previous):  # a merge crossed the boundary: the changed tokens go to this segment
            del ids[len(ids) - (len(previous) - common):]
            del weights[len(weights) - (len(previous) - common):]
        for token in current[common:]:
            ids.append(token)
            weights.append(1.0 if completion else PROMPT_LOSS_WEIGHT)
        previous = current
    eos = config["eos_token_id"]
    eos = eos[0] if isinstance(eos, list) else eos
    if ids[-1] != eos:
        ids.append(eos)
        weights.append(1.0)
    return ids, weights


def compute():
    torch.manual_seed(0)
    torch.set_num_threads(1)
    with open(os.path.join(MODEL, "config.json")) as f:
        config = json.load(f)
    tokenizer = tokenizers.Tokenizer.from_file(os.path.join(MODEL, "tokenizer.json"))
    model = LlamaForCausalLM.from_pretrained(MODEL, dtype=torch.float32).eval()
    weighted_sum, weight_sum, tokens, examples = 0.0, 0.0, 0, 0
    with open(DATA) as f:
        lines = [json.loads(line) for line in f if line.strip()]
    for example in lines:
        ids, weights = tokenize(tokenizer, config, example)
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0].double()
        losses = torch.nn.functional.cross_entropy(logits[:-1], torch.tensor(ids[1:]), reduction="none")
        w = torch.tensor(weights[1:], dtype=torch.float64)
        weighted_sum += float((losses * w).sum())
        weight_sum += float(w.sum())
        tokens += len(ids)
        examples += 1
    loss = weighted_sum / weight_sum
    return {"model": "examples/base", "data": "tests/data/eval_loss/base.jsonl",
            "prompt_loss_weight": PROMPT_LOSS_WEIGHT, "examples": examples, "tokens": tokens,
            "weight_sum": round(weight_sum, 6), "loss": loss, "perplexity": math.exp(loss),
            "versions": PINNED}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--verify", action="store_true")
    args = parser.parse_args()
    check_versions()
    result = compute()
    if args.verify:
        with open(GOLDEN) as f:
            committed = json.load(f)
        if abs(committed["loss"] - result["loss"]) > 1e-9 * abs(result["loss"]) or committed["tokens"] != result["tokens"]:
            sys.exit(f"differs: committed {committed}, now {result}")
        print("ok", result["loss"])
        return
    with open(GOLDEN, "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
