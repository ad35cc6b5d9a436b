#!/usr/bin/env python3
"""GGUF models written by llama.cpp's own converter, for vktune's GGUF model loader.

llama.cpp's convert_hf_to_gguf.py (from the PyPI sdist llama-cpp-python==0.3.36, vendor/llama.cpp,
with its own gguf-py) converts the tiny HF golden models of tests/data/hf/<family> (hf_golden.py):

  tests/data/gguf/<family>.f32.gguf      --outtype f32 (llama3, smollm2, mistral, qwen2, qwen3, phi3)
  tests/data/gguf/<family>.q8_0.gguf     --outtype q8_0 (llama3, qwen3)
  tests/data/gguf/tokenizer_<family>.gguf   --vocab-only: tests/data/tokenizers/bytelevel_<family>.json
                                           (llama3, qwen2) as the converter writes a gpt2 vocabulary
  tests/data/gguf/tiny_llama.q8_0.gguf     a tiny random Llama (vocab 277) with bytelevel_llama3.json as its
                                           tokenizer, for the command-line tests (train/evaluate/generate)
  tests/data/gguf/<family>.q8_0.golden.bin
      transformers + PEFT (the family's adapter, tests/data/hf/<family>/adapter) run on the golden
      batch of tests/data/hf/<family>.golden.bin with every weight replaced by the q8_0 file's
      dequantized values (gguf-py's numpy dequantizer; Q/K rows unpermuted back to HF order):
      batch.*, q8_0.logits/.loss/.dembed/.grad.* in hf_golden.py's layout.

Gemma 2 and Gemma 3 lose what llama.cpp hard-codes (query_pre_attn_scalar = head_dim, the layer
pattern 2 / 6, Gemma 3's local RoPE base 10000): the HF golden models of hf_gemma_golden.py do not
follow those rules, so two tiny models that do are made here (GEMMA, fixed seeds):
  tests/data/gguf/hf_<gemma2|gemma3>/      config.json + model.safetensors (+ adapter/, PEFT LoRA r=4)
  tests/data/gguf/<gemma2|gemma3>.f32.gguf  their conversion (norms stored as 1 + w by the converter)
  tests/data/gguf/<gemma2|gemma3>.golden.bin  transformers + PEFT on the golden batch: batch.*, fp32.*

The f32 files need no golden of their own: they hold the HF weights exactly, so the C++ test
(tests/test_model_gguf_golden.cpp) compares them with tests/data/hf/<family>.golden.bin's fp32.*.

Our tiny models carry no tokenizer (their goldens need none), which every set_vocab of the converter
requires: for these models only, set_vocab is replaced by the converter's own _set_vocab_none
(tokenizer.ggml.model = "none"); everything else is the converter as shipped.

Run: /work/venv/bin/python tests/reference/gguf_model_golden.py [--verify]
     (LLAMA_CPP=/tmp/lcp/llama_cpp_python-0.3.36/vendor/llama.cpp by default: llama.cpp's converter
     from the PyPI sdist, `pip download llama-cpp-python==0.3.36 --no-deps --no-binary :all: -d
     /tmp/lcp && tar xzf /tmp/lcp/llama_cpp_python-0.3.36.tar.gz -C /tmp/lcp`; pinned torch 2.15.0,
     transformers 5.23.0, peft 0.21.2)
"""
import contextlib
import json
import os
import shutil
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
LLAMA_CPP = os.environ.get("LLAMA_CPP", "/tmp/lcp/llama_cpp_python-0.3.36/vendor/llama.cpp")
sys.path[:0] = [os.path.join(LLAMA_CPP, "gguf-py"), LLAMA_CPP, HERE]

import numpy as np  # noqa: E402
import torch  # noqa: E402

import gguf  # noqa: E402  (llama.cpp's gguf-py, the converter's writer)
import convert_hf_to_gguf  # noqa: E402
from conversion import base as conversion_base  # noqa: E402

import golden_io  # noqa: E402
import transformers  # noqa: E402
import hf_golden  # noqa: E402

HF = os.path.join(HERE, "..", "data", "hf")
OUT = os.path.join(HERE, "..", "data", "gguf")
F32_FAMILIES = ["llama3", "smollm2", "mistral", "qwen2", "qwen3", "phi3"]
Q8_FAMILIES = ["llama3", "qwen3"]
# The families whose attn_q/attn_k the converter permutes (LlamaModel.undo_permute; Qwen2/Qwen3 do not).
PERMUTED = {"llama3", "smollm2", "mistral"}


def no_vocab(self):
    self._set_vocab_none()


@contextlib.contextmanager
def vocab_method(method):
    """The converter's class for the model, with set_vocab replaced for the duration."""
    original = convert_hf_to_gguf.get_model_class
    replaced = []

    def with_method(*args, **kwargs):
        chosen = original(*args, **kwargs)
        replaced.append((chosen, chosen.__dict__.get("set_vocab")))
        chosen.set_vocab = method
        return chosen
    convert_hf_to_gguf.get_model_class = with_method
    try:
        yield
    finally:
        convert_hf_to_gguf.get_model_class = original
        for chosen, before in replaced:
            if before is None:
                del chosen.set_vocab
            else:
                chosen.set_vocab = before


def convert(family, outtype, out_path, folder=None):
    with tempfile.TemporaryDirectory() as tmp:
        folder = folder or os.path.join(HF, family)
        for name in ("config.json", "model.safetensors"):
            shutil.copy(os.path.join(folder, name), tmp)
        # Gemma3Model trims token_embd to the tokenizer's size (len(vocab) + len(added_tokens) of
        # tokenizer.json): a stand-in with exactly vocab_size entries keeps every row.
        vocab = json.load(open(os.path.join(folder, "config.json")))["vocab_size"]
        if family == "gemma3":
            json.dump({"model": {"vocab": {"t%d" % i: i for i in range(vocab)}}, "added_tokens": []},
                      open(os.path.join(tmp, "tokenizer.json"), "w"))
        with vocab_method(no_vocab):
            # --model-name: general.name would otherwise be the temporary folder's random name.
            sys.argv = ["convert_hf_to_gguf.py", tmp, "--outtype", outtype, "--outfile", out_path, "--model-name",
                        "vktune-" + family]
            convert_hf_to_gguf.main()


HF_NAMES = {"attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
            "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
            "ffn_down": "mlp.down_proj", "attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
            "attn_q_norm": "self_attn.q_norm", "attn_k_norm": "self_attn.k_norm"}


def unpermute(rows, heads):
    """Inverse of LlamaModel.permute (rows (heads * head_dim, ...))."""
    shape = rows.shape
    return rows.reshape(heads, rows.shape[0] // heads // 2, 2, *shape[1:]).swapaxes(1, 2).reshape(shape)


def dequantized_state(path, family, config):
    reader = gguf.GGUFReader(path)
    state = {}
    for tensor in reader.tensors:
        values = gguf.quants.dequantize(tensor.data, tensor.tensor_type)
        values = np.array(values, dtype=np.float32).reshape([int(n) for n in reversed(tensor.shape)])
        parts = tensor.name.split(".")
        if parts[0] == "token_embd":
            name = "model.embed_tokens.weight"
        elif parts[0] == "output_norm":
            name = "model.norm.weight"
        elif parts[0] == "output":
            name = "lm_head.weight"
        elif parts[0] == "rope_freqs":
            continue
        else:
            layer, kind, suffix = parts[1], parts[2], parts[3]
            name = "model.layers.%s.%s.%s" % (layer, HF_NAMES[kind], suffix)
            if family in PERMUTED and kind == "attn_q":
                values = unpermute(values, config.num_attention_heads)
            if family in PERMUTED and kind == "attn_k":
                values = unpermute(values, config.num_key_value_heads)
        state[name] = torch.from_numpy(values.copy())
    return state


def q8_golden(family, gguf_path, out_path):
    seed = 1000 + 100 * list(hf_golden.FAMILIES).index(family)
    model = hf_golden.build_model(family, seed)
    state = dequantized_state(gguf_path, family, model.config)
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not unexpected and all(k == "lm_head.weight" for k in missing), (missing, unexpected)
    golden = golden_io.read_golden(os.path.join(HF, family + ".golden.bin"))
    ids = torch.from_numpy(golden["batch.ids"].astype(np.int64))
    mask = torch.from_numpy(golden["batch.weights"].astype(np.int64))
    result = hf_golden.forward_backward(hf_golden.with_lora(model, os.path.join(HF, family, "adapter")), ids, mask)
    rows = [(key, golden[key]) for key in ("batch.ids", "batch.weights", "batch.positions", "batch.lengths")]
    rows += [("q8_0.logits", result["logits"].numpy()), ("q8_0.loss", result["loss"].numpy().astype(np.float32)),
             ("q8_0.dembed", result["dembed"].numpy())]
    rows += [("q8_0.grad." + name, result["grads"][name].numpy()) for name in sorted(result["grads"])]
    golden_io.write_golden(out_path, rows)
    print("%-8s q8_0 loss %.6f" % (family, float(result["loss"])))


# Tokenizer-only files (--vocab-only) of the byte-level BPE tokenizers in tests/data/tokenizers:
# (family whose config.json goes with it -- transformers 5 picks the tokenizer class from its model_type --,
# tokenizer, the tokenizer.ggml.pre llama.cpp would pick for the real one, bos, eos, chat template).
# The converter identifies a pre-tokenizer by hashing its output on a fixed text; our tiny tokenizers
# hash to nothing it knows, so get_vocab_base_pre is told the name of the real tokenizer's regex.
TOKENIZERS = [
    ("llama3", "bytelevel_llama3.json", "llama-bpe", "<|begin_of_text|>", "<|end_of_text|>", None),
    ("qwen2", "bytelevel_qwen2.json", "qwen2", None, "<|endoftext|>",
     "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
     "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"),
]


def convert_tokenizer(family, source, pre, bos, eos, chat_template, out_path):
    document = json.load(open(os.path.join(HERE, "..", "data", "tokenizers", source)))
    vocab = 1 + max(list(document["model"]["vocab"].values()) + [t["id"] for t in document["added_tokens"]])
    with tempfile.TemporaryDirectory() as tmp:
        config = json.load(open(os.path.join(HF, family, "config.json")))
        config["vocab_size"] = vocab
        json.dump(config, open(os.path.join(tmp, "config.json"), "w"))
        shutil.copy(os.path.join(HF, family, "model.safetensors"), tmp)
        shutil.copy(os.path.join(HERE, "..", "data", "tokenizers", source), os.path.join(tmp, "tokenizer.json"))
        tokenizer_config = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": bos, "eos_token": eos}
        if chat_template:
            tokenizer_config["chat_template"] = chat_template
        json.dump(tokenizer_config, open(os.path.join(tmp, "tokenizer_config.json"), "w"))
        base_pre = conversion_base.TextModel.get_vocab_base_pre
        conversion_base.TextModel.get_vocab_base_pre = lambda self, tokenizer: pre
        # Qwen2Model.set_vocab tries SentencePiece first (no tokenizer.model here; the sentencepiece
        # module is not installed either, which it does not catch) and then takes _set_vocab_gpt2:
        # go there directly.
        try:
            with vocab_method(lambda self: self._set_vocab_gpt2()):
                sys.argv = ["convert_hf_to_gguf.py", tmp, "--vocab-only", "--outfile", out_path, "--model-name",
                            "vktune-tokenizer-" + family]
                convert_hf_to_gguf.main()
        finally:
            conversion_base.TextModel.get_vocab_base_pre = base_pre


def tiny_model_with_tokenizer(out_path):
    """A tiny random Llama with bytelevel_llama3.json's vocabulary (277) as one q8_0 GGUF with its
    tokenizer: what the command-line tests train, evaluate and generate with."""
    config = transformers.LlamaConfig(**dict(hf_golden.COMMON, vocab_size=277, bos_token_id=271, eos_token_id=272),
                                      head_dim=8, tie_word_embeddings=True)
    torch.manual_seed(4242)
    model = transformers.AutoModelForCausalLM.from_config(config).float().eval()
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        shutil.copy(os.path.join(HERE, "..", "data", "tokenizers", "bytelevel_llama3.json"),
                    os.path.join(tmp, "tokenizer.json"))
        json.dump({"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<|begin_of_text|>",
                   "eos_token": "<|end_of_text|>"}, open(os.path.join(tmp, "tokenizer_config.json"), "w"))
        base_pre = conversion_base.TextModel.get_vocab_base_pre
        conversion_base.TextModel.get_vocab_base_pre = lambda self, tokenizer: "llama-bpe"  # as TOKENIZERS says
        try:
            with vocab_method(lambda self: self._set_vocab_gpt2()):
                sys.argv = ["convert_hf_to_gguf.py", tmp, "--outtype", "q8_0", "--outfile", out_path, "--model-name",
                            "vktune-tiny-llama"]
                convert_hf_to_gguf.main()
        finally:
            conversion_base.TextModel.get_vocab_base_pre = base_pre


# Tiny Gemmas that keep to what a GGUF file can say (see the docstring): query_pre_attn_scalar =
# head_dim, the default layer patterns (Gemma 2: sliding then global; Gemma 3 with two layers:
# both sliding), Gemma 3's local base 10000 and Gemma 2's single base 10000. A window (5) shorter
# than the batch (13) and soft caps small enough to bend these logits.
GEMMA_COMMON = dict(hf_golden.COMMON, intermediate_size=32, head_dim=8, query_pre_attn_scalar=8, sliding_window=5, rms_norm_eps=1e-6,
                    tie_word_embeddings=True)
GEMMA = {
    "gemma2": (transformers.Gemma2Config, dict(attn_logit_softcapping=5.0, final_logit_softcapping=3.0,
                                               rope_parameters={"rope_type": "default", "rope_theta": 10000.0})),
    "gemma3": (transformers.Gemma3TextConfig, dict(final_logit_softcapping=3.0,
                                                   rope_parameters={"full_attention": {"rope_type": "default",
                                                                                       "rope_theta": 1000000.0},
                                                                    "sliding_attention": {"rope_type": "default",
                                                                                          "rope_theta": 10000.0}})),
}


def gemma_golden(family, seed, out_dir):
    config_class, extra = GEMMA[family]
    config = config_class(**GEMMA_COMMON, **extra)
    torch.manual_seed(seed)
    base = transformers.AutoModelForCausalLM.from_config(config, attn_implementation="eager").float().eval()
    with torch.no_grad():  # norms start at 0 (1 + w): perturb them so that their weights matter
        for name, parameter in base.named_parameters():
            if name.endswith("norm.weight"):
                parameter.add_(0.2 * torch.randn_like(parameter))
    folder = os.path.join(out_dir, "hf_" + family)
    base.save_pretrained(folder, safe_serialization=True)
    torch.manual_seed(seed + 3)
    model = hf_golden.with_lora(base)
    model.save_pretrained(os.path.join(folder, "adapter"))
    ids, mask = hf_golden.golden_batch(config.vocab_size, seed)
    result = hf_golden.forward_backward(model, ids, mask)
    rows = [("batch.ids", ids.numpy().astype(np.int32)), ("batch.weights", mask.numpy().astype(np.float32)),
            ("batch.positions", torch.arange(hf_golden.SEQ).expand(2, hf_golden.SEQ).numpy().astype(np.int32)),
            ("batch.lengths", np.array(hf_golden.LENGTHS, np.int32)),
            ("fp32.logits", result["logits"].numpy()), ("fp32.loss", result["loss"].numpy().astype(np.float32)),
            ("fp32.dembed", result["dembed"].numpy())]
    rows += [("fp32.grad." + name, result["grads"][name].numpy()) for name in sorted(result["grads"])]
    golden_io.write_golden(os.path.join(out_dir, family + ".golden.bin"), rows)
    convert(family, "f32", os.path.join(out_dir, family + ".f32.gguf"), folder)
    print("%-8s loss %.6f, layer types %s" % (family, float(result["loss"]), config.layer_types))


def run(out_dir):
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    os.makedirs(out_dir, exist_ok=True)
    for family in F32_FAMILIES:
        convert(family, "f32", os.path.join(out_dir, family + ".f32.gguf"))
    for family in Q8_FAMILIES:
        path = os.path.join(out_dir, family + ".q8_0.gguf")
        convert(family, "q8_0", path)
        q8_golden(family, path, os.path.join(out_dir, family + ".q8_0.golden.bin"))
    for family, *rest in TOKENIZERS:
        convert_tokenizer(family, *rest, os.path.join(out_dir, "tokenizer_" + family + ".gguf"))
    tiny_model_with_tokenizer(os.path.join(out_dir, "tiny_llama.q8_0.gguf"))
    for index, family in enumerate(GEMMA):
        gemma_golden(family, 7000 + 100 * index, out_dir)


def main():
    if os.environ.get("PYTHONHASHSEED") != "0":  # PEFT's target_modules order (as hf_golden.py)
        os.execve(sys.executable, [sys.executable] + sys.argv, dict(os.environ, PYTHONHASHSEED="0"))
    hf_golden.check_versions()
    hf_golden.write_or_verify(run, OUT, "tests/data/gguf")

if __name__ == "__main__":
    main()
