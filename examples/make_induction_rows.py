#!/usr/bin/env python3
"""Rows that reward copying from the context, for continued pretraining of the demo's base (issue 20).

Half the rows are runs of consecutive verses in the demo prompt's line format (as make_copy_rows.py,
no repeats): "Ge1:3\nAnd God said, ...\nGe1:4\n...". The other half are sequences of 4-16 random
items, each followed by itself on the next line; an item is a word that is one token of the base's
BPE (60%), a number 1-176 (20%) or a reference like the prompt's (20%):
    "hosts 17 wept Lev3:12 Jordan\nhosts 17 wept Lev3:12 Jordan\nsaid unto ...\n"
The second copy of a random sequence can only be predicted by looking back: the signal that forms
induction heads (a previous-token head, then a head that attends to the token after an earlier
occurrence of the current one), which a base trained on single verses never formed (README
"Results"). Numbers and references are in the mix because a head that learned to copy words only
did not copy them (bench/demo_induction_pretrain.py). Every 20th verse is validation, as
make_corpus.sh's split. Seeded: the same rows every run.
Usage: make_induction_rows.py KJV_TXT TOKENIZER_JSON TRAIN_JSONL VALID_JSONL
"""
import json
import random
import re
import sys

ROW_WORDS = 100  # words per row (~140 tokens of the 2048-token BPE; max_length 128 keeps the first 128)


def single_token_words(tokenizer_json):
    """Words of 2+ letters that the byte-level BPE encodes after a space as one token ("Ġword")."""
    with open(tokenizer_json, encoding="utf-8") as f:
        vocabulary = json.load(f)["model"]["vocab"]
    return sorted(t[1:] for t in vocabulary if t.startswith("\u0120") and t[1:].isascii() and t[1:].isalpha()
                  and len(t) > 2)


def verse_rows(verses):
    out, row, words = [], [], 0
    for ref, text in verses:
        row.append(f"{ref}\n{text}\n")
        words += len(text.split())
        if words >= ROW_WORDS:
            out.append("".join(row))
            row, words = [], 0
    return out


def item(words, books, rng):
    """Words, numbers and references: copying must cover the token kinds the demo's record copies."""
    kind = rng.random()
    if kind < 0.6:
        return rng.choice(words)
    if kind < 0.8:
        return str(rng.randint(1, 176))
    return f"{rng.choice(books)}{rng.randint(1, 50)}:{rng.randint(1, 80)}"


def copy_row(words, books, rng):
    lines, count = [], 0
    while count < ROW_WORDS:
        sequence = " ".join(item(words, books, rng) for _ in range(rng.randint(4, 16)))
        lines += [sequence, sequence]
        count += 2 * len(sequence.split())
    return "".join(line + "\n" for line in lines)


def main():
    kjv, tokenizer_json, train_path, valid_path = sys.argv[1:5]
    train, valid = [], []
    with open(kjv, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            ref, _, text = line.rstrip("\n").partition(" ")
            (valid if number % 20 == 0 else train).append((ref, text))
    words = single_token_words(tokenizer_json)
    books = sorted({re.match(r"\d*[A-Za-z]+", ref).group(0) for ref, _ in train})
    rng = random.Random(1)
    for path, verses in ((train_path, train), (valid_path, valid)):
        plain = verse_rows(verses)
        rows = plain + [copy_row(words, books, rng) for _ in plain]
        rng.shuffle(rows)
        with open(path, "w", encoding="utf-8") as f:
            for text in rows:
                f.write(json.dumps({"text": text}) + "\n")


if __name__ == "__main__":
    main()
