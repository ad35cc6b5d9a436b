#!/usr/bin/env python3
"""An independent Python re-implementation of Hugging Face tokenizers' BPE pipeline, used to
cross-check vkt::text::Tokenizer on the fixtures in tests/data/tokenizers/.

It covers what the fixtures use: added tokens (leftmost-longest, lstrip/rstrip/single_word,
normalized), normalizers (Prepend, Replace, NFC/NFKC, Lowercase, Sequence), pre-tokenizers (Split,
ByteLevel, Metaspace, Sequence), BPE (byte fallback, unk + fuse_unk, ignore_merges) and the
TemplateProcessing post-processor. BPE here is the plain quadratic loop (merge the lowest-ranked
adjacent pair, leftmost on ties, until none applies), not the C++ heap.

Regexes run on the `regex` module (Debian: python3-regex), not PCRE2, so the two implementations
share no code and no regex engine.

Writes tests/data/tokenizers/reference_ids.json: {fixture: [[text, add_special_tokens, ids], ...]}.
Run: /usr/bin/python3 tests/reference/tokenizer_reference.py
"""
import json
import os
import unicodedata

import regex

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "data", "tokenizers")

GPT2_PATTERN = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"


def byte_char_map():
    printable = set(range(ord("!"), ord("~") + 1)) | set(range(0xA1, 0xAD)) | set(range(0xAE, 0x100))
    mapping, extra = {}, 0
    for b in range(256):
        if b in printable:
            mapping[b] = chr(b)
        else:
            mapping[b] = chr(256 + extra)
            extra += 1
    return mapping


BYTE_CHAR = byte_char_map()


def is_ws(c):
    return c.isspace() or c == "\x85"


def is_word(c):
    return unicodedata.category(c)[0] in "LM" or unicodedata.category(c) in ("Nd", "Nl", "Pc")


def split_by(text, matches, behavior):
    """matches: list of (start, end); returns kept (start, end) per HF's split behaviours."""
    spans, prev = [], 0
    for s, e in matches:
        if prev != s:
            spans.append((prev, s, False))
        spans.append((s, e, True))
        prev = e
    if prev != len(text):
        spans.append((prev, len(text), False))
    if behavior == "Isolated":
        return [(s, e) for s, e, _ in spans]
    if behavior == "Removed":
        return [(s, e) for s, e, m in spans if not m]
    if behavior == "MergedWithNext":
        out, prev_match = [], False
        for s, e, m in reversed(spans):
            if m and not prev_match and out:
                out[-1] = (s, out[-1][1])
            else:
                out.append((s, e))
            prev_match = m
        return list(reversed(out))
    raise NotImplementedError(behavior)


def pattern_matches(pattern, text):
    if "String" in pattern:
        literal = pattern["String"]
        out, start = [], 0
        while literal:
            at = text.find(literal, start)
            if at < 0:
                break
            out.append((at, at + len(literal)))
            start = at + len(literal)
        return out
    return [(m.start(), m.end()) for m in regex.finditer(pattern["Regex"], text)]


class Reference:
    def __init__(self, document):
        model = document["model"]
        self.vocab = model["vocab"]
        self.rank = {}
        for i, merge in enumerate(model["merges"]):
            left, right = merge.split(" ") if isinstance(merge, str) else merge
            self.rank[(left, right)] = i
        self.byte_fallback = model.get("byte_fallback") or False
        self.unk = model.get("unk_token")
        self.fuse_unk = model.get("fuse_unk") or False
        self.ignore_merges = model.get("ignore_merges") or False
        self.added = [t for t in document.get("added_tokens", []) if t["content"]]
        self.normalizer = document.get("normalizer")
        self.pre_tokenizer = document.get("pre_tokenizer")
        self.post = document.get("post_processor")

    # --- normalizers ---
    def normalize(self, text, node=None):
        node = self.normalizer if node is None else node
        if node is None:
            return text
        kind = node["type"]
        if kind == "Sequence":
            for child in node["normalizers"]:
                text = self.normalize(text, child)
            return text
        if kind == "Prepend":
            return node["prepend"] + text if text else text
        if kind == "Replace":
            out, prev = "", 0
            for s, e in pattern_matches(node["pattern"], text):
                out += text[prev:s] + node["content"]
                prev = e
            return out + text[prev:]
        if kind in ("NFC", "NFKC", "NFD", "NFKD"):
            return unicodedata.normalize(kind, text)
        if kind == "Lowercase":
            return "".join(c.lower() for c in text)
        raise NotImplementedError(kind)

    # --- added tokens ---
    def split_added(self, text, at_start, normalized):
        tokens = [t for t in self.added if t["normalized"] == normalized]
        if not tokens:
            return [(text, at_start, None)]
        forms = [(self.normalize(t["content"]) if normalized else t["content"], t) for t in tokens]
        pieces, start_offset, pos = [], 0, 0
        while pos < len(text):
            candidates = [(len(form), t) for form, t in forms if text.startswith(form, pos)]
            if not candidates:
                pos += 1
                continue
            length, token = max(candidates, key=lambda c: c[0])
            start, stop = pos, pos + length
            pos = stop
            if token["single_word"]:
                before_ok = start == 0 or not is_word(text[start - 1])
                after_ok = stop == len(text) or not is_word(text[stop])
                if not (before_ok and after_ok):
                    continue
            if token["lstrip"]:
                while start > start_offset and is_ws(text[start - 1]):
                    start -= 1
            if token["rstrip"]:
                while stop < len(text) and is_ws(text[stop]):
                    stop += 1
                pos = max(pos, stop)
            if start_offset < start:
                pieces.append((text[start_offset:start], at_start and start_offset == 0, None))
            pieces.append((text[start:stop], False, self.token_id(token["content"])))
            start_offset = stop
        if start_offset < len(text):
            pieces.append((text[start_offset:], at_start and start_offset == 0, None))
        return pieces

    def token_id(self, content):
        for t in self.added:
            if t["content"] == content:
                return t["id"]
        return self.vocab[content]

    # --- pre-tokenizers ---
    def pre_tokenize(self, pieces, node):
        if node is None:
            return pieces
        kind = node["type"]
        if kind == "Sequence":
            for child in node["pretokenizers"]:
                pieces = self.pre_tokenize(pieces, child)
            return pieces
        out = []
        for text, at_start, token in pieces:
            if token is not None:
                out.append((text, at_start, token))
                continue
            for part_text, part_start in self.pre_tokenize_one(text, at_start, node):
                if part_text:
                    out.append((part_text, part_start, None))
        return out

    def pre_tokenize_one(self, text, at_start, node):
        kind = node["type"]
        if kind == "Split":
            kept = split_by(text, pattern_matches(node["pattern"], text), node["behavior"])
            return [(text[s:e], at_start and s == 0) for s, e in kept]
        if kind == "ByteLevel":
            if node.get("add_prefix_space", True) and not text.startswith(" "):
                text = " " + text
            if node.get("use_regex", True):
                kept = split_by(text, [(m.start(), m.end()) for m in regex.finditer(GPT2_PATTERN, text)], "Isolated")
                parts = [(text[s:e], at_start and s == 0) for s, e in kept]
            else:
                parts = [(text, at_start)]
            return [("".join(BYTE_CHAR[b] for b in p.encode("utf-8")), s) for p, s in parts]
        if kind == "Metaspace":
            rep = node["replacement"]
            text = text.replace(" ", rep)
            scheme = node.get("prepend_scheme", "always")
            if not text.startswith(rep) and (scheme == "always" or (scheme == "first" and at_start)):
                text = rep + text
            if not node.get("split", True):
                return [(text, at_start)]
            kept = split_by(text, [(i, i + 1) for i, c in enumerate(text) if c == rep], "MergedWithNext")
            return [(text[s:e], at_start and s == 0) for s, e in kept]
        raise NotImplementedError(kind)

    # --- BPE ---
    def bpe(self, word):
        if self.ignore_merges and word in self.vocab:
            return [self.vocab[word]]
        symbols, unk = [], None  # symbols: token strings (or ("unk",) markers via ids later)
        ids = []
        for ch in word:
            if ch in self.vocab:
                if unk is not None:
                    ids.append(unk)
                    unk = None
                ids.append(self.vocab[ch])
                continue
            byte_tokens = ["<0x%02X>" % b for b in ch.encode("utf-8")]
            if self.byte_fallback and all(t in self.vocab for t in byte_tokens):
                ids.extend(self.vocab[t] for t in byte_tokens)
                continue
            if self.unk is not None:
                if unk is not None and not self.fuse_unk:
                    ids.append(unk)
                unk = self.vocab[self.unk]
        if unk is not None:
            ids.append(unk)
        by_id = {v: k for k, v in self.vocab.items()}
        symbols = [by_id[i] for i in ids]
        while True:
            best = None
            for i in range(len(symbols) - 1):
                r = self.rank.get((symbols[i], symbols[i + 1]))
                if r is not None and (best is None or r < best[0]):
                    best = (r, i)
            if best is None:
                break
            i = best[1]
            symbols[i:i + 2] = [symbols[i] + symbols[i + 1]]
        return [self.vocab[s] for s in symbols]

    def encode(self, text, add_special_tokens):
        pieces = self.split_added(text, True, False)
        normalized = []
        for piece_text, at_start, token in pieces:
            if token is not None:
                normalized.append((piece_text, at_start, token))
                continue
            for part in self.split_added(self.normalize(piece_text), at_start, True):
                if part[0] or part[2] is not None:
                    normalized.append(part)
        pieces = self.pre_tokenize(normalized, self.pre_tokenizer)
        ids = []
        for piece_text, _, token in pieces:
            ids.extend([token] if token is not None else self.bpe(piece_text))
        if add_special_tokens and self.post is not None:
            ids = self.post_process(ids, self.post)
        return ids

    def post_process(self, ids, node):
        if node["type"] == "Sequence":
            for child in node["processors"]:
                ids = self.post_process(ids, child)
            return ids
        if node["type"] == "TemplateProcessing":
            out = []
            for piece in node["single"]:
                if "Sequence" in piece:
                    out.extend(ids)
                else:
                    out.extend(node["special_tokens"][piece["SpecialToken"]["id"]]["ids"])
            return out
        return ids


TEXTS = [
    "hello world", "Hello World", "hello  world", "ell", "hel", " xyz", "12345", "1234567 89", "café", "naïve résumé",
    "你好", "你好，世界！", "👍", "a👍b 👍👍", "a\n\nb", "a\r\n b\t\tc", "IT'S it's we'll", "a  b", "a   b", "a   ",
    "   leading", "x<r>  y", "a <mask> b", "hi there", "this hi", "<|begin_of_text|>ab<|eot_id|>",
    "a <|eot_id|> b", "<s>hello</s>", "hello <s> world", "</s></s>", "Привет мир", "مرحبا", "e\u0301 precomposed é",
    "tab\there", "  ", "", "x" * 40, "hello hello hello", "ÿ\x7f\x00end", "😀😃😄 emoji run", "mixed 123abc!!? ok",
]


def random_texts(count, seed=1234):
    """Random strings over an alphabet that exercises the regexes, the merges, byte fallback and
    the added tokens (no exotic whitespace where Python's \\s and Oniguruma's differ)."""
    import random
    rng = random.Random(seed)
    atoms = list("abcdehlorwxyzST'") + ["hello", "world", "ell", "hi", "12345", "34", "é", "É", "ñ", "ß", "ĳ",
             "你", "好", "世界", "👍", "😀", "\u0301", " ", "  ", "\u00a0", "\u3000", "\n", "\n\n", "\t", "\r\n",
             "!", "?", ".", ",", "<", ">", "|", "<s>", "</s>", "<|eot_id|>", "<|begin_of_text|>", "<mask>", "<r>",
             "<|im_start|>", "<|im_end|>", "e\u0301", "\u212b", "\ufb01",
             "xyz", " xyz", "IT'S", "'ll", "\x7f", "ÿ"]
    return ["".join(rng.choice(atoms) for _ in range(rng.randint(1, 12))) for _ in range(count)]


def main():
    results = {}
    texts = TEXTS + random_texts(120)
    for name in ["bytelevel_llama3.json", "bytelevel_gpt2.json", "sentencepiece_llama2.json",
                 "metaspace_mistral.json", "bytelevel_qwen2.json"]:
        with open(os.path.join(DATA, name), encoding="utf-8") as f:
            reference = Reference(json.load(f))
        rows = []
        for text in texts:
            for add in (False, True):
                rows.append([text, add, reference.encode(text, add)])
        results[name] = rows
    with open(os.path.join(DATA, "reference_ids.json"), "w", encoding="utf-8") as f:
        json.dump(results, f, ensure_ascii=False)
        f.write("\n")
    print("wrote reference_ids.json:", sum(len(v) for v in results.values()), "cases")


if __name__ == "__main__":
    main()
