#!/usr/bin/env python3
"""Writes the small tokenizer.json fixtures under tests/data/tokenizers/.

The merges and extra tokens are chosen by hand so that test expectations can be worked out on
paper (tests/test_model_io.cpp derives each expected id list in a comment). Only the repetitive
parts (the 256 byte tokens) are generated here.

  byte-level fixtures: token id == byte value for the 256 byte tokens (GPT-2 byte-to-unicode
  characters), merges from id 256 on.
  sentencepiece fixtures: <unk>=0, <s>=1, </s>=2, <0x00>..<0xFF> = 3..258, pieces from 259 on.

Run: /usr/bin/python3 tests/reference/make_tokenizer_fixtures.py
"""
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "data", "tokenizers")


def bytes_to_unicode():
    """openai/gpt-2 encoder.py: printable bytes stand for themselves, the rest map to U+0100..."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + list(range(0xAE, 0xFF + 1))
    mapping, extra = {}, 0
    for b in range(256):
        if b in printable:
            mapping[b] = chr(b)
        else:
            mapping[b] = chr(256 + extra)
            extra += 1
    return mapping


BYTE_CHAR = bytes_to_unicode()

# (left, right) in rank order; each merged token gets the next id.
BYTE_LEVEL_MERGES = [
    ("h", "e"),        # 0 -> "he" 256
    ("l", "l"),        # 1 -> "ll" 257
    ("ll", "o"),       # 2 -> "llo" 258
    ("he", "llo"),     # 3 -> "hello" 259
    ("Ġ", "w"),        # 4 -> "Ġw" 260
    ("o", "r"),        # 5 -> "or" 261
    ("Ġw", "or"),      # 6 -> "Ġwor" 262
    ("l", "d"),        # 7 -> "ld" 263
    ("Ġwor", "ld"),    # 8 -> "Ġworld" 264
    ("e", "l"),        # 9 -> "el" 265 (ranked after "l l": "ell" must become e + ll)
    ("3", "4"),        # 10 -> "34" 266 (shows whether "12345" was split into 123|45)
    ("Ã", "©"),        # 11 -> "Ã©" 267 (é = C3 A9)
    ("Ċ", "Ċ"),        # 12 -> "ĊĊ" 268 (two newlines)
    ("'", "S"),        # 13 -> "'S" 269 (shows the case-insensitive contraction of Llama 3's regex)
]
BYTE_LEVEL_EXTRA = ["Ġxyz"]  # 270: in the vocabulary, reachable by no merge (ignore_merges)

LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                  r"|\s*[\r\n]+|\s+(?!\S)|\s+")


def added(token_id, content, special, lstrip=False, rstrip=False, single_word=False, normalized=None):
    return {"id": token_id, "content": content, "single_word": single_word, "lstrip": lstrip, "rstrip": rstrip,
            "normalized": (not special) if normalized is None else normalized, "special": special}


def byte_level_vocab():
    vocab = {BYTE_CHAR[b]: b for b in range(256)}
    for left, right in BYTE_LEVEL_MERGES:
        vocab[left + right] = len(vocab)
    for token in BYTE_LEVEL_EXTRA:
        vocab[token] = len(vocab)
    return vocab


def llama3_style():
    vocab = byte_level_vocab()
    n = len(vocab)  # 271
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            added(n, "<|begin_of_text|>", True),
            added(n + 1, "<|end_of_text|>", True),
            added(n + 2, "<|eot_id|>", True),
            added(n + 3, "<mask>", False, lstrip=True, normalized=False),
            added(n + 4, "<r>", False, rstrip=True, normalized=False),
            added(n + 5, "hi", False, single_word=True, normalized=False),
        ],
        "normalizer": None,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": LLAMA3_PATTERN}, "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False},
        ]},
        "post_processor": {"type": "Sequence", "processors": [
            {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
            {"type": "TemplateProcessing",
             "single": [{"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}},
                        {"Sequence": {"id": "A", "type_id": 0}}],
             "pair": [{"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}},
                      {"Sequence": {"id": "A", "type_id": 0}},
                      {"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 1}},
                      {"Sequence": {"id": "B", "type_id": 1}}],
             "special_tokens": {"<|begin_of_text|>": {"id": "<|begin_of_text|>", "ids": [n],
                                                      "tokens": ["<|begin_of_text|>"]}}},
        ]},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": True,
                  "vocab": vocab, "merges": [[left, right] for left, right in BYTE_LEVEL_MERGES]},
    }


def gpt2_style():
    vocab = byte_level_vocab()
    n = len(vocab)
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [added(n, "<|endoftext|>", True)],
        "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
        "post_processor": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        # Legacy merges: "left right" strings.
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
                  "end_of_word_suffix": "", "fuse_unk": False, "byte_fallback": False,
                  "vocab": vocab, "merges": [left + " " + right for left, right in BYTE_LEVEL_MERGES]},
    }


QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
                 r"|\s+(?!\S)|\s+")


def qwen2_style():
    """As Qwen2's tokenizer.json: NFC normalizer, Split (one digit per piece) + ByteLevel, no BOS."""
    vocab = byte_level_vocab()
    n = len(vocab)
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [added(n, "<|endoftext|>", True), added(n + 1, "<|im_start|>", True),
                         added(n + 2, "<|im_end|>", True)],
        "normalizer": {"type": "NFC"},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": QWEN2_PATTERN}, "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False},
        ]},
        "post_processor": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False},
        "decoder": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
                  "end_of_word_suffix": "", "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": vocab, "merges": [left + " " + right for left, right in BYTE_LEVEL_MERGES]},
    }


SP_PIECES = ["▁", "a", "b", "c", "h", "e", "l", "o", "w", "r", "d", "é", "t"]  # 259..271
SP_MERGES = [
    ("▁", "h"),        # 0 -> "▁h" 272
    ("l", "l"),        # 1 -> "ll" 273
    ("▁h", "e"),       # 2 -> "▁he" 274
    ("ll", "o"),       # 3 -> "llo" 275
    ("▁he", "llo"),    # 4 -> "▁hello" 276
    ("▁", "w"),        # 5 -> "▁w" 277
    ("o", "r"),        # 6 -> "or" 278
    ("▁w", "or"),      # 7 -> "▁wor" 279
    ("l", "d"),        # 8 -> "ld" 280
    ("▁wor", "ld"),    # 9 -> "▁world" 281
    ("▁", "▁"),        # 10 -> "▁▁" 282
    ("e", "l"),        # 11 -> "el" 283
]


def sentencepiece_vocab():
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for b in range(256):
        vocab["<0x%02X>" % b] = len(vocab)
    for piece in SP_PIECES:
        vocab[piece] = len(vocab)
    for left, right in SP_MERGES:
        vocab[left + right] = len(vocab)
    return vocab


def sentencepiece_specials():
    return [added(0, "<unk>", True), added(1, "<s>", True), added(2, "</s>", True)]


def bos_template():
    return {"type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": "<s>", "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}}


def sentencepiece_model():
    return {"type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": None,
            "end_of_word_suffix": None, "fuse_unk": True, "byte_fallback": True,
            "vocab": sentencepiece_vocab(), "merges": [left + " " + right for left, right in SP_MERGES]}


def llama2_style():
    """As HF's Llama 2 / TinyLlama tokenizer.json: normalizer, no pre-tokenizer."""
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": sentencepiece_specials(),
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": "▁"},
            {"type": "Replace", "pattern": {"String": " "}, "content": "▁"},
        ]},
        "pre_tokenizer": None,
        "post_processor": bos_template(),
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
            {"type": "ByteFallback"},
            {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0},
        ]},
        "model": sentencepiece_model(),
    }


def mistral_style():
    """As newer sentencepiece conversions (legacy=False): Metaspace pre-tokenizer, prepend 'first'."""
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": sentencepiece_specials(),
        "normalizer": None,
        "pre_tokenizer": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": False},
        "post_processor": bos_template(),
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "ByteFallback"},
            {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": False},
        ]},
        "model": sentencepiece_model(),
    }


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, document in [("bytelevel_llama3.json", llama3_style()), ("bytelevel_gpt2.json", gpt2_style()),
                           ("sentencepiece_llama2.json", llama2_style()), ("metaspace_mistral.json", mistral_style()),
                           ("bytelevel_qwen2.json", qwen2_style())]:
        with open(os.path.join(OUT, name), "w", encoding="utf-8") as f:
            json.dump(document, f, ensure_ascii=False, indent=1)
            f.write("\n")
        print("wrote", name)


if __name__ == "__main__":
    main()
