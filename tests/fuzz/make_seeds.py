"""Writes the seed corpora of the libFuzzer targets into tests/fuzz/corpus/<target>/.

Small valid inputs of every shape the readers accept (the fuzzer mutates from there); the
committed files come from this script. Run: /work/venv/bin/python tests/fuzz/make_seeds.py
Pinned: safetensors 0.8.0, tokenizers 0.23.3, numpy (any).
"""
import json
import pathlib
import shutil

import numpy as np
import safetensors
import tokenizers
from safetensors.numpy import save
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

assert safetensors.__version__ == "0.8.0" and tokenizers.__version__ == "0.23.3"
root = pathlib.Path(__file__).resolve().parents[2]
corpus = root / "tests/fuzz/corpus"


def target(name):
    path = corpus / name
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


# safetensors: each dtype, scalars, empty tensors, metadata, several tensors.
out = target("safetensors")
rng = np.random.default_rng(0)
(out / "f32.safetensors").write_bytes(save({"w": rng.standard_normal((2, 3)).astype(np.float32)}))
(out / "f16_meta.safetensors").write_bytes(
    save({"a.weight": rng.standard_normal((4,)).astype(np.float16)}, metadata={"format": "pt"}))
(out / "mixed.safetensors").write_bytes(save({
    "b": np.arange(6, dtype=np.int64).reshape(3, 2), "c": np.array([1, 0, 1], dtype=np.bool_),
    "d": np.arange(4, dtype=np.uint8), "e": np.zeros((0, 3), dtype=np.float32),
    "f": np.array(1.5, dtype=np.float64), "g": np.arange(3, dtype=np.int32)}))
# BF16 has no numpy dtype: the F16 file's data with the header's dtype renamed and re-padded.
bf16 = bytearray(save({"x": np.ones((2, 2), dtype=np.float16)}))
header_len = int.from_bytes(bf16[:8], "little")
header = json.loads(bf16[8:8 + header_len])
header["x"]["dtype"] = "BF16"
text = json.dumps(header, separators=(",", ":")).encode()
text += b" " * ((8 - (8 + len(text)) % 8) % 8)
(out / "bf16.safetensors").write_bytes(len(text).to_bytes(8, "little") + text + bytes(bf16[8 + header_len:]))

# config.json: the committed tiny models of every supported family.
out = target("model_config")
for family in ["llama3", "mistral", "qwen2", "qwen3", "smollm2", "gemma2", "gemma3"]:
    shutil.copy(root / f"tests/data/hf/{family}/config.json", out / f"{family}.json")
shutil.copy(root / "tests/data/golden/llama-nf4/config.json", out / "llama-nf4.json")

# tokenizer.json: tiny tokenizers of the main kinds (byte-level BPE, Metaspace BPE with byte
# fallback, WordPiece, Unigram), trained on a few lines so merges and vocab are real.
out = target("tokenizer")
lines = ["Hello world, hello vktune!", "naïve café 123 456", "the quick brown fox", "日本語 テキスト"] * 4
specials = ["<s>", "</s>", "<unk>"]

bpe = Tokenizer(models.BPE())
bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
bpe.decoder = decoders.ByteLevel()
bpe.train_from_iterator(lines, trainers.BpeTrainer(vocab_size=300, special_tokens=specials,
                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
bpe.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 0)])
(out / "bytelevel_bpe.json").write_text(bpe.to_str())

meta = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
meta.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Replace(" ", "▁")])
meta.pre_tokenizer = pre_tokenizers.Metaspace()
meta.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                  decoders.Strip(" ", 1, 0)])
meta.train_from_iterator(lines, trainers.BpeTrainer(vocab_size=120, special_tokens=specials))
(out / "metaspace_bpe.json").write_text(meta.to_str())

wordpiece = Tokenizer(models.WordPiece(unk_token="<unk>"))
wordpiece.normalizer = normalizers.BertNormalizer()
wordpiece.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
wordpiece.train_from_iterator(lines, trainers.WordPieceTrainer(vocab_size=100, special_tokens=specials))
(out / "wordpiece.json").write_text(wordpiece.to_str())

unigram = Tokenizer(models.Unigram())
unigram.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                 pre_tokenizers.Whitespace()])
unigram.train_from_iterator(lines, trainers.UnigramTrainer(vocab_size=60, special_tokens=specials,
                                                           unk_token="<unk>"))
(out / "unigram.json").write_text(unigram.to_str())

# JSONL: the three formats, blank lines, unicode and escapes.
out = target("jsonl")
(out / "text.jsonl").write_text('{"text": "In the beginning"}\n\n{"text": "caf\\u00e9 \\n 日本"}\n')
(out / "prompt_completion.jsonl").write_text(
    '{"prompt": "Ge1:1 In the beginning", "completion": " {\\"book\\": \\"Ge\\"}"}\n'
    '{"prompt": "", "completion": "x", "extra": [1, 2.5, null, true]}\n')
(out / "messages.jsonl").write_text(
    '{"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"},'
    ' {"role": "assistant", "content": "hello"}]}\n'
    '{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},'
    ' {"role": "user", "content": "c"}, {"role": "assistant", "content": "d"}]}\n')

# Training YAML: the shipped recipes plus one that sets a value of every kind.
out = target("train_yaml")
shutil.copy(root / "examples/demo/qlora.yaml", out / "qlora.yaml")
shutil.copy(root / "examples/recipes/pretrain-kjv.yaml", out / "pretrain-kjv.yaml")
(out / "kinds.yaml").write_text(
    "model: m\ndata: d.jsonl\noutput_dir: out\nmethod: lora\nlora_r: 8\nlora_alpha: 16\n"
    "learning_rate: 2.0e-4\nlr_scheduler_type: cosine\nwarmup_steps: 0.1\ntarget_modules: [q_proj, v_proj]\n"
    "packing: true\nlr_scheduler_kwargs: '{\"num_cycles\": 2}'\nmax_steps: 10\n")

# Sweep YAML: the shipped example, a grid with a list value, a random search over distributions.
out = target("sweep_yaml")
shutil.copy(root / "examples/sweep/lr_r.yaml", out / "lr_r.yaml")
(out / "grid.yaml").write_text(
    "output_dir: out\nobjective: train_loss\nbudget: {steps: 5, minutes: 1}\ntrain: {model: m, data: d.jsonl, lora_r: 8}\n"
    "parameters:\n  learning_rate: [1e-4, 3e-4]\n  target_modules: {values: [[q_proj, v_proj], all-linear]}\n")
(out / "random.yaml").write_text(
    "train: {model: m, data: d.jsonl}\nobjective: train_loss\nmethod: random\ntrials: 3\nseed: 2\nparameters:\n"
    "  lora_alpha: {distribution: int_uniform, min: 2, max: 64}\n"
    "  lora_dropout: {distribution: uniform, min: 0, max: 0.2}\n")

# mergekit YAML: the shipped examples (every method, slices, gradients, adapters).
out = target("merge_yaml")
for path in sorted((root / "examples/merge").glob("*.yaml")):
    shutil.copy(path, out / path.name)

# GGUF: files llama.cpp's writers made (tests/reference/gguf_golden.py, gguf_model_golden.py): every
# metadata type, two q8_0 models (llama permuted, qwen3), two tokenizer-only files.
out = target("gguf")
for name in ["metadata.gguf", "tokenizer_llama3.gguf", "tokenizer_qwen2.gguf", "llama3.q8_0.gguf", "qwen3.q8_0.gguf"]:
    shutil.copy(root / "tests/data/gguf" / name, out / name)
