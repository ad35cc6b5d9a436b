#!/usr/bin/env python3
"""Rows of consecutive verses for pretraining a base that can copy from its context (issue 20).

Input: kjv.txt from examples/make_corpus.sh ("Ge1:3 And God said, ..." per line). Output: JSONL
{"text": ...} rows in the demo prompt's line format, the reference on its own line, then the verse:
    Ge1:3\nAnd God said, Let there be light: and there was light.\nGe1:4\nAnd God saw ...\n
so the next reference repeats the book and chapter of the previous one (copying the reference is
rewarded), and in about half the rows one earlier verse of the row recurs at its end, reference and
text (an induction head predicts the repeat: copying the text is rewarded). All verses of a row are
in one attention segment. Every 20th verse is validation, as make_corpus.sh's split: train rows
hold training verses only, validation rows validation verses only. Seeded: the same rows every run.
Usage: make_copy_rows.py KJV_TXT TRAIN_JSONL VALID_JSONL
"""
import json
import random
import sys

ROW_WORDS = 100  # consecutive verses per row up to this many words (~140 tokens of the 2048-token BPE)
REPEAT_WORDS = 140  # a repeat is appended while the row stays within this (rows fit max_length 256)


def rows(verses, rng):
    """verses: [(reference, text)] in Bible order -> row texts."""
    out, row, words = [], [], 0
    for ref, text in verses + [(None, "")]:
        n = len(text.split()) if ref is not None else 0
        if row and (ref is None or words + n > ROW_WORDS):
            if rng.random() < 0.5:
                repeat = rng.choice(row)
                if words + len(repeat[1].split()) <= REPEAT_WORDS:
                    row = row + [repeat]
            out.append("".join(f"{r}\n{t}\n" for r, t in row))
            row, words = [], 0
        if ref is not None:
            row.append((ref, text))
            words += n
    return out


def main():
    kjv, train_path, valid_path = sys.argv[1:4]
    train, valid = [], []
    with open(kjv, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            ref, _, text = line.rstrip("\n").partition(" ")
            (valid if number % 20 == 0 else train).append((ref, text))
    rng = random.Random(1)
    for path, verses in ((train_path, train), (valid_path, valid)):
        with open(path, "w", encoding="utf-8") as f:
            for text in rows(verses, rng):
                f.write(json.dumps({"text": text}) + "\n")


if __name__ == "__main__":
    main()
