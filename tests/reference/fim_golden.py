"""Golden data for fill-in-the-middle examples (`vktune train --fim-rate R --fim-spm-rate S`, engine/train/fim.cpp).

    python3 tests/reference/fim_golden.py            # rewrite tests/data/fim/fim_golden.json
    python3 tests/reference/fim_golden.py --verify   # regenerate in memory, fail unless identical

permute() below is bigcode's character-level FIM transform (Megatron-LM bigcode fork,
megatron/data/gpt_dataset.py, permute(): detokenize, two boundaries drawn with
np_rng.randint(0, len(contents) + 1, size=2) and sorted, prefix/middle/suffix tokenized apart, SPM
"variant 2 from FIM paper" with probability fim_spm_rate, else PSM), with two changes that the C++ side
documents: the random draws come from splitmix64 (numpy's RandomState is not reproduced in C++) in
permute()'s order (bernoulli(fim_rate), then the two boundaries, then bernoulli(fim_spm_rate)); and the
sample is the text itself (vktune splits JSONL texts, not detokenized token windows). The tokenizer here is
UTF-8 bytes + 3 (ids 0, 1, 2 are the FIM tokens prefix, suffix, middle), which the C++ test uses too.
Pure Python, no packages.
"""
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "data", "fim", "fim_golden.json")
MASK = (1 << 64) - 1
PREFIX_ID, SUFFIX_ID, MIDDLE_ID = 0, 1, 2


class SplitMix64:
    def __init__(self, seed):
        self.state = seed & MASK

    def next(self):
        self.state = (self.state + 0x9E3779B97F4A7C15) & MASK
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        return z ^ (z >> 31)

    def binomial1(self, p):  # np_rng.binomial(1, p)
        return (self.next() >> 11) * 2.0 ** -53 < p

    def randint(self, low, high):  # np_rng.randint(low, high): an integer in [low, high)
        return low + self.next() % (high - low)


def tokenize(text):
    return [b + 3 for b in text.encode("utf-8")]


def permute(contents, rng, fim_rate, fim_spm_rate):
    """bigcode's permute() on one text; returns (token ids, record of the split)."""
    if rng.binomial1(fim_rate):
        boundaries = [rng.randint(0, len(contents) + 1), rng.randint(0, len(contents) + 1)]
        boundaries.sort()
        prefix = contents[:boundaries[0]]
        middle = contents[boundaries[0]:boundaries[1]]
        suffix = contents[boundaries[1]:]
        spm = rng.binomial1(fim_spm_rate)
        p, m, s = tokenize(prefix), tokenize(middle), tokenize(suffix)
        if spm:  # SPM (variant 2 from FIM paper)
            ids = [PREFIX_ID, SUFFIX_ID] + s + [MIDDLE_ID] + p + m
        else:  # PSM
            ids = [PREFIX_ID] + p + [SUFFIX_ID] + s + [MIDDLE_ID] + m
        return ids, {"applied": True, "spm": spm, "prefix": prefix, "middle": middle, "suffix": suffix}
    return tokenize(contents), {"applied": False, "spm": False, "prefix": contents, "middle": "", "suffix": ""}


TEXTS = ["def add(a, b):\n    return a + b\n", "x", "", "héllo wörld — ünïcode ✓ 𝄞 end",
         "for i in range(10):\n    print(i * i)\n", "int main() { return 0; }"]
RUNS = [(42, 0.5, 0.5), (7, 1.0, 0.0), (7, 1.0, 1.0), (1234, 0.9, 0.5), (99, 0.0, 0.5)]


def build():
    runs = []
    for seed, fim_rate, spm_rate in RUNS:
        rng = SplitMix64(seed)
        examples = []
        for _ in range(3):  # one generator through the data, as over an epoch
            for text in TEXTS:
                ids, record = permute(text, rng, fim_rate, spm_rate)
                record["text"] = text
                record["ids"] = ids
                examples.append(record)
        runs.append({"seed": seed, "fim_rate": fim_rate, "fim_spm_rate": spm_rate, "examples": examples})
    return {"generator": "splitmix64", "token_ids": "utf-8 bytes + 3; 0 prefix, 1 suffix, 2 middle", "runs": runs}


def main():
    text = json.dumps(build(), ensure_ascii=False, indent=1) + "\n"
    if "--verify" in sys.argv:
        with open(OUT, encoding="utf-8") as f:
            if f.read() != text:
                sys.exit(f"{OUT} differs from a fresh run")
        print("verified", OUT)
        return
    with open(OUT, "w", encoding="utf-8") as f:
        f.write(text)
    print("wrote", OUT)


if __name__ == "__main__":
    main()
