#!/usr/bin/env python3
"""A SentencePiece (`tokenizer.ggml.model = llama`) GGUF tokenizer and what llama.cpp itself makes of it.

1. A real SentencePiece BPE model, trained here with the sentencepiece package on
   tests/data/tokenizers/corpus.jsonl as Llama's tokenizer.model is set up (byte_fallback,
   split_digits, add_dummy_prefix, identity normalization, whitespace-only pieces; character
   coverage 0.995 so that rare characters are left to the <0xNN> byte tokens; user-defined
   symbols <|sep|> and <|endoftext|>, which llama.cpp requires of a Phi-3 vocabulary), with a
   Llama-2 style chat template and add_bos_token in tokenizer_config.json.
2. llama.cpp's own converter (convert_hf_to_gguf.py --vocab-only from the llama-cpp-python 0.3.36
   sdist, as gguf_model_golden.py; LlamaModel.set_vocab -> _set_vocab_sentencepiece: tokens,
   scores, token types, special ids, add_bos/add_eos, chat template) writes
   tests/data/gguf/tokenizer_spm.gguf.
3. tests/data/gguf/tokenizer_spm.golden.json, one entry per corpus line:
     "llama_cpp":  llama.cpp's llama_tokenize(text, add_special=true, parse_special=true) on that
                   file (libllama of the node-llama-cpp 3.22.1 npm package, llama.cpp release
                   v0.5.0, through ctypes; its llm_tokenizer_spm_session is the sdist's, line for line)
     "decoded":    llama_detokenize(ids, remove_special=false, unparse_special=true), only where it is
                   not "<s> " + text
     "decoded_skip": llama_detokenize(ids without the leading BOS, true, false), only where it is not
                   the text
     "llama_cpp_no_prefix": the same for tests/data/gguf/tokenizer_spm_noprefix.gguf (the first 80
                   lines): the vocabulary converted as Gemma2Model.set_vocab does, add_space_prefix false
     "llama_cpp_phi3": the same for tests/data/gguf/tokenizer_spm_phi3.gguf (general.name with "phi3":
                   llama.cpp strips the whitespace after special tokens), where it differs from "llama_cpp"
     "hf":         Hugging Face tokenizers' ids for the same tokenizer.model (transformers'
                   LlamaTokenizer conversion, legacy), only where they differ from llama.cpp's
     "sentencepiece": sentencepiece's own ids (with BOS), only where they differ from llama.cpp's
   and "counts": how many lines agree.
4. tests/data/gguf/tiny_gemma3_spm.q8_0.gguf: a tiny random Gemma 3 (fixed seed) with this vocabulary,
   q8_0, converted by the converter as shipped (tests/test_evaluate_loss.cpp trains and generates).
5. tests/data/gguf/tokenizer_gpt2.llama_cpp.json: llama.cpp's ids for the byte-level BPE GGUF files
   tokenizer_llama3.gguf / tokenizer_qwen2.gguf (gguf_model_golden.py), on the corpus lines where they
   differ from HF tokenizers on their tokenizer.json (qwen2: llama.cpp applies no NFC).
The C++ test (tests/test_model_gguf_tokenizer_spm.cpp) requires vktune's ids to equal "llama_cpp"
on every line, decoding to equal llama.cpp's, and reports the agreement with HF.

Run: /work/venv/bin/python tests/reference/gguf_spm_tokenizer_golden.py [--verify]
     (pinned: sentencepiece 0.2.3, protobuf 7.36.2, tokenizers 0.23.3, transformers 5.23.0; LLAMA_CPP as in
     gguf_model_golden.py; LIBLLAMA=<dir of libllama.v0.5.0.so>, by default the npm package
     node-llama-cpp@3.22.1's @node-llama-cpp/linux-x64 binaries under /work/.cache/node-llama-cpp:
     `npm install --prefix /work/.cache/node-llama-cpp node-llama-cpp@3.22.1`)
"""
import ctypes
import json
import os
import shutil
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
LLAMA_CPP = os.environ.get("LLAMA_CPP", "/tmp/lcp/llama_cpp_python-0.3.36/vendor/llama.cpp")
LIBLLAMA = os.environ.get("LIBLLAMA", "/work/.cache/node-llama-cpp/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64")
sys.path[:0] = [os.path.join(LLAMA_CPP, "gguf-py"), LLAMA_CPP, HERE]

import google.protobuf  # noqa: E402  (transformers reads tokenizer.model through it)
import sentencepiece  # noqa: E402
import tokenizers  # noqa: E402
import transformers  # noqa: E402

import convert_hf_to_gguf  # noqa: E402
import gguf_model_golden  # noqa: E402  (vocab_method)
import hf_golden  # noqa: E402

PINNED = {"sentencepiece": "0.2.3", "protobuf": "7.36.2", "tokenizers": "0.23.3", "transformers": "5.23.0"}
OUT = os.path.join(ROOT, "tests", "data", "gguf")
NO_PREFIX_LINES = 80  # corpus lines also tokenized by the add_space_prefix = false file
CHAT_TEMPLATE = ("{{ bos_token }}{% for m in messages %}{% if m['role'] == 'user' %}[INST] {{ m['content'] }} [/INST]"
                 "{% else %} {{ m['content'] }}{{ eos_token }}{% endif %}{% endfor %}")


def corpus():
    with open(os.path.join(ROOT, "tests", "data", "tokenizers", "corpus.jsonl"), encoding="utf-8") as f:
        return [json.loads(line)["text"] for line in f if line.strip()]


def train(folder):
    text_path = os.path.join(folder, "corpus.txt")
    with open(text_path, "w", encoding="utf-8") as f:
        for line in corpus():
            f.write(line.replace("\n", " ") + "\n")
    sentencepiece.set_random_generator_seed(1234)
    sentencepiece.SentencePieceTrainer.train(
        input=text_path, model_prefix=os.path.join(folder, "tokenizer"), model_type="bpe", vocab_size=1200,
        hard_vocab_limit=False, character_coverage=0.995, byte_fallback=True, split_digits=True,
        allow_whitespace_only_pieces=True, normalization_rule_name="identity", add_dummy_prefix=True,
        remove_extra_whitespaces=False, unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
        user_defined_symbols=["<|sep|>", "<|endoftext|>"], num_threads=1, minloglevel=2)
    os.remove(text_path)


def convert(folder, out_path, space_prefix=True, name="vktune-tokenizer-spm"):
    """--vocab-only through LlamaModel.set_vocab (SentencePiece): the tiny llama3 golden model's
    config with this vocabulary's size. Without space_prefix, set_vocab is Gemma2Model's own
    (_set_vocab_sentencepiece, then add_space_prefix false)."""
    model = sentencepiece.SentencePieceProcessor(model_file=os.path.join(folder, "tokenizer.model"))
    config = json.load(open(os.path.join(ROOT, "tests", "data", "hf", "llama3", "config.json")))
    config["vocab_size"] = model.vocab_size()
    json.dump(config, open(os.path.join(folder, "config.json"), "w"))
    shutil.copy(os.path.join(ROOT, "tests", "data", "hf", "llama3", "model.safetensors"), folder)
    json.dump({"tokenizer_class": "LlamaTokenizer", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
               "add_bos_token": True, "add_eos_token": False, "legacy": True, "chat_template": CHAT_TEMPLATE},
              open(os.path.join(folder, "tokenizer_config.json"), "w"))
    sys.argv = ["convert_hf_to_gguf.py", folder, "--vocab-only", "--outfile", out_path, "--model-name", name]
    if space_prefix:
        convert_hf_to_gguf.main()
        return

    def gemma_vocab(self):
        self._set_vocab_sentencepiece()
        self.gguf_writer.add_add_space_prefix(False)
    with gguf_model_golden.vocab_method(gemma_vocab):
        convert_hf_to_gguf.main()


class LlamaCpp:
    """llama_tokenize / llama_detokenize of libllama on a vocab-only load."""

    lib = None  # libllama, loaded once

    def __init__(self, gguf_path):
        if LlamaCpp.lib is None:
            ggml = ctypes.CDLL(os.path.join(LIBLLAMA, "libggml.v0.5.0.so"), mode=ctypes.RTLD_GLOBAL)
            ggml.ggml_backend_load_all_from_path.argtypes = [ctypes.c_char_p]
            ggml.ggml_backend_load_all_from_path(LIBLLAMA.encode())
            LlamaCpp.lib = ctypes.CDLL(os.path.join(LIBLLAMA, "libllama.v0.5.0.so"))
            LlamaCpp.lib.llama_backend_init()
        lib = LlamaCpp.lib

        class Params(ctypes.Structure):  # struct llama_model_params of that release (include/llama.h)
            _fields_ = [("bytes", ctypes.c_uint8 * 80)]
        lib.llama_model_default_params.restype = Params
        params = lib.llama_model_default_params()
        params.bytes[72] = 1  # vocab_only (after 9 pointer-sized / int fields: offset 72)
        lib.llama_model_load_from_file.argtypes = [ctypes.c_char_p, Params]
        lib.llama_model_load_from_file.restype = ctypes.c_void_p
        self.model = lib.llama_model_load_from_file(gguf_path.encode(), params)
        assert self.model, "llama.cpp did not load " + gguf_path
        lib.llama_model_get_vocab.argtypes = [ctypes.c_void_p]
        lib.llama_model_get_vocab.restype = ctypes.c_void_p
        self.vocab = lib.llama_model_get_vocab(self.model)
        lib.llama_tokenize.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int32,
                                       ctypes.POINTER(ctypes.c_int32), ctypes.c_int32, ctypes.c_bool, ctypes.c_bool]
        lib.llama_detokenize.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_int32), ctypes.c_int32,
                                         ctypes.c_char_p, ctypes.c_int32, ctypes.c_bool, ctypes.c_bool]
        self.lib = lib

    def tokenize(self, text):
        data = text.encode("utf-8")
        out = (ctypes.c_int32 * (4 * len(data) + 8))()
        n = self.lib.llama_tokenize(self.vocab, data, len(data), out, len(out), True, True)
        assert n >= 0, n
        return list(out[:n])

    def detokenize(self, ids, remove_special, unparse_special):
        array = (ctypes.c_int32 * max(1, len(ids)))(*ids)
        buffer = ctypes.create_string_buffer(64 * len(ids) + 64)
        n = self.lib.llama_detokenize(self.vocab, array, len(ids), buffer, len(buffer), remove_special,
                                      unparse_special)
        assert n >= 0, n
        return buffer.raw[:n].decode("utf-8", errors="replace")


def run(out_dir):
    os.makedirs(out_dir, exist_ok=True)
    gguf_path = os.path.join(out_dir, "tokenizer_spm.gguf")
    with tempfile.TemporaryDirectory() as folder:
        train(folder)
        convert(folder, gguf_path)
        tiny_gemma3(folder, os.path.join(out_dir, "tiny_gemma3_spm.q8_0.gguf"))
        sp = sentencepiece.SentencePieceProcessor(model_file=os.path.join(folder, "tokenizer.model"))
        os.remove(os.path.join(folder, "config.json"))  # AutoTokenizer: the class from tokenizer_config.json
        hf = transformers.AutoTokenizer.from_pretrained(folder)
        no_prefix_path = os.path.join(out_dir, "tokenizer_spm_noprefix.gguf")
        convert(folder, no_prefix_path, space_prefix=False)
        # llama.cpp gives every special token but <unk>, <s>, <|endoftext|> rstrip when general.name
        # says Phi-3: the same vocabulary under such a name.
        phi3_path = os.path.join(out_dir, "tokenizer_spm_phi3.gguf")
        convert(folder, phi3_path, name="vktune-phi3-tokenizer")
        llama = LlamaCpp(gguf_path)
        no_prefix = LlamaCpp(no_prefix_path)
        phi3 = LlamaCpp(phi3_path)
        lines, counts = [], {"lines": 0, "hf_equal": 0, "sentencepiece_equal": 0}
        for text in corpus():
            ids = llama.tokenize(text)
            entry = {"llama_cpp": ids}
            # Decoding, stored where it is not the obvious text (most lines): with the special tokens
            # shown, and of the ids after BOS with them removed -- how a continuation is decoded.
            # (With BOS in the ids, llama_detokenize keeps the prefix space: " Hello" for "Hello".)
            decoded = llama.detokenize(ids, False, True)
            decoded_skip = llama.detokenize(ids[1:] if ids[:1] == [sp.bos_id()] else ids, True, False)
            if decoded != "<s> " + text:
                entry["decoded"] = decoded
            if decoded_skip != text:
                entry["decoded_skip"] = decoded_skip
            hf_ids = hf(text)["input_ids"]
            sp_ids = [sp.bos_id()] + sp.encode(text)
            if hf_ids != ids:
                entry["hf"] = hf_ids
            if sp_ids != ids:
                entry["sentencepiece"] = sp_ids
            if len(lines) < NO_PREFIX_LINES:
                entry["llama_cpp_no_prefix"] = no_prefix.tokenize(text)
            if "<" in text and phi3.tokenize(text) != ids:
                entry["llama_cpp_phi3"] = phi3.tokenize(text)
            counts["lines"] += 1
            counts["hf_equal"] += hf_ids == ids
            counts["sentencepiece_equal"] += sp_ids == ids
            lines.append(entry)
    with open(os.path.join(out_dir, "tokenizer_spm.golden.json"), "w", encoding="utf-8") as f:
        head = {"counts": counts, "versions": PINNED, "llama_cpp": "node-llama-cpp 3.22.1 (llama.cpp v0.5.0)"}
        f.write(json.dumps(head, ensure_ascii=False)[:-1] + ', "lines": [\n')  # one corpus line per line
        f.write(",\n".join(json.dumps(entry, ensure_ascii=False, separators=(",", ":")) for entry in lines))
        f.write("\n]}\n")
    print("tokenizer_spm:", counts)
    gpt2_differences(out_dir)


def tiny_gemma3(folder, out_path):
    """A tiny random Gemma3ForCausalLM with this SentencePiece vocabulary, converted to q8_0 by
    llama.cpp's converter as shipped (Gemma3Model.set_vocab reads tokenizer.model and writes
    add_space_prefix false): the command-line tests' GGUF Gemma with a SentencePiece tokenizer."""
    import torch
    vocab = sentencepiece.SentencePieceProcessor(model_file=os.path.join(folder, "tokenizer.model")).vocab_size()
    config = transformers.Gemma3TextConfig(
        vocab_size=vocab, hidden_size=32, intermediate_size=32, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=8, query_pre_attn_scalar=8, sliding_window=16, max_position_embeddings=512,
        bos_token_id=1, eos_token_id=2, pad_token_id=0, tie_word_embeddings=True)
    torch.manual_seed(4343)
    model = transformers.AutoModelForCausalLM.from_config(config).float().eval()
    with tempfile.TemporaryDirectory() as model_dir:
        model.save_pretrained(model_dir, safe_serialization=True)
        for name in ("tokenizer.model", "tokenizer_config.json"):
            shutil.copy(os.path.join(folder, name), model_dir)
        sys.argv = ["convert_hf_to_gguf.py", model_dir, "--outtype", "q8_0", "--outfile", out_path, "--model-name",
                    "vktune-tiny-gemma3"]
        convert_hf_to_gguf.main()


def gpt2_differences(out_dir):
    """llama.cpp on the byte-level BPE GGUF tokenizers of gguf_model_golden.py (tokenizer_llama3.gguf,
    tokenizer_qwen2.gguf): its ids on the corpus lines where they differ from Hugging Face tokenizers
    on the tokenizer.json they came from (added-token flags cleared, as GGUF keeps none)."""
    out = {}
    for family in ("llama3", "qwen2"):
        llama = LlamaCpp(os.path.join(OUT, "tokenizer_%s.gguf" % family))  # an input: gguf_model_golden.py wrote it
        document = json.load(open(os.path.join(ROOT, "tests", "data", "tokenizers", "bytelevel_%s.json" % family)))
        for token in document["added_tokens"]:
            token["single_word"] = token["lstrip"] = token["rstrip"] = False
        hf = tokenizers.Tokenizer.from_str(json.dumps(document))
        differing = {}
        for index, text in enumerate(corpus()):
            ids = llama.tokenize(text)
            if ids != hf.encode(text, add_special_tokens=True).ids:
                differing[str(index)] = ids
        out[family] = differing
        print("tokenizer_%s: llama.cpp differs from HF tokenizers on %d lines" % (family, len(differing)))
    with open(os.path.join(out_dir, "tokenizer_gpt2.llama_cpp.json"), "w", encoding="utf-8") as f:
        json.dump(out, f, separators=(",", ":"))
        f.write("\n")


def main():
    found = {"sentencepiece": sentencepiece.__version__, "protobuf": google.protobuf.__version__,
             "tokenizers": tokenizers.__version__,
             "transformers": transformers.__version__}
    if found != PINNED:
        sys.exit("pinned %s, found %s" % (PINNED, found))
    hf_golden.write_or_verify(run, OUT, "tests/data/gguf")


if __name__ == "__main__":
    main()
