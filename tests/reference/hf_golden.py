"""Golden data from Hugging Face's own code: transformers builds each tiny model, PEFT adds LoRA.

Run with the pinned environment (these exact versions; the script refuses others):
    /work/venv/bin/python tests/reference/hf_golden.py            # rewrite tests/data/hf/
    /work/venv/bin/python tests/reference/hf_golden.py --verify   # regenerate in a temp dir, fail
                                                                  # unless every file is identical

Per family (Llama 3.x with llama3 RoPE, SmolLM2, Mistral, Qwen2, Qwen3, Phi-3 with longrope: long and
short factors in the batch) it writes
    tests/data/hf/<family>/                  model (save_pretrained, safetensors, fp32)
    tests/data/hf/<family>/adapter/          PEFT LoRA adapter (save_pretrained)
    tests/data/hf/<family>.golden.bin        golden tensors (format: tests/reference/golden_io.py)
Golden tensors (the names tests/test_model_golden.cpp reads):
    batch.ids/weights/positions/lengths      two sequences (13 and 9 tokens), the second right-padded
    fp32.logits (2, 13, vocab)               PeftModel forward with attention_mask (eager attention)
    fp32.loss                                transformers' causal LM loss (labels, -100 on padding)
    fp32.dembed (2, 13, hidden)              d loss / d inputs_embeds
    fp32.grad.<PEFT name>                    every LoRA gradient (r=4, alpha=8, all-linear)
    full.* (qwen3 only)                      full finetuning: gradients of every weight (q_norm, k_norm...)
    nf4.*                                    the same with every linear weight replaced by its NF4 +
                                             double-quant round trip (nf4.py, bitsandbytes-exact)
    gen.prompt / gen.ids / gen.margin        generate(do_sample=False), 20 new tokens, KV cache
"""
import filecmp
import json
import os
import sys
import tempfile

import numpy as np
import torch

import golden_io
import nf4

PINNED = {"torch": "2.15.0", "transformers": "5.23.0", "peft": "0.21.2"}

import peft  # noqa: E402
import transformers  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "data", "hf")

PAD_ID, BOS_ID, EOS_ID = 0, 1, 2
LENGTHS, SEQ = [13, 9], 13
# A top-1/top-2 gap of 1e-3 is 10x the logits bound of the C++ test: no token can flip.
GEN_NEW_TOKENS, GEN_MIN_DISTINCT, GEN_MIN_MARGIN = 20, 8, 1e-3
LORA = dict(r=4, lora_alpha=8, target_modules="all-linear", lora_dropout=0.0, init_lora_weights=False)

COMMON = dict(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, max_position_embeddings=256, rms_norm_eps=1e-5, initializer_range=0.1,
              bos_token_id=BOS_ID, eos_token_id=EOS_ID, pad_token_id=PAD_ID)

# head_dim 8: inv_freq = 10000^(-i/4), wavelengths 6.3, 63, 628, 6283. With original context 64,
# low_freq_factor 1 and high_freq_factor 4 the bands are wavelen < 16 (kept), 16..64 (smoothed) and
# > 64 (divided by factor): one, one and two frequencies, so all three bands are exercised.
LLAMA3_ROPE = {"rope_type": "llama3", "rope_theta": 10000.0, "factor": 8.0, "low_freq_factor": 1.0,
               "high_freq_factor": 4.0, "original_max_position_embeddings": 64}

# head_dim 8: four rotary pairs, each with its own short and long factor.
PHI3_ORIGINAL_CONTEXT = 8
PHI3_LONGROPE = {"rope_type": "longrope", "rope_theta": 10000.0, "short_factor": [1.0, 1.25, 1.5, 2.0],
                 "long_factor": [1.0, 3.0, 7.5, 16.0], "original_max_position_embeddings": PHI3_ORIGINAL_CONTEXT}
PHI3_SHORT_CONTEXT = 16

# head_dim 8, original context 64, factor 4: yarn's correction range is dims 0..2, so the four
# frequencies are extrapolated, blended half-half, and interpolated (two); cos/sin times 1.1386.
LLAMA_YARN_ROPE = {"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0, "original_max_position_embeddings": 64}

FAMILIES = {
    "llama3": (transformers.LlamaConfig, dict(head_dim=8, rope_parameters=LLAMA3_ROPE, tie_word_embeddings=False)),
    "smollm2": (transformers.LlamaConfig, dict(head_dim=8, rope_parameters={"rope_type": "default", "rope_theta": 100000.0},
                                               tie_word_embeddings=True)),
    # The window (32) is longer than any sequence here (13; prompt + 20 generated = 25).
    "mistral": (transformers.MistralConfig, dict(head_dim=8, sliding_window=32, tie_word_embeddings=False,
                                                 rope_parameters={"rope_type": "default", "rope_theta": 1000000.0})),
    "qwen2": (transformers.Qwen2Config, dict(tie_word_embeddings=True,
                                             rope_parameters={"rope_type": "default", "rope_theta": 1000000.0})),
    # head_dim 16 != hidden / heads (8): q_proj is 32 -> 64, o_proj 64 -> 32; q_norm/k_norm over 16.
    "qwen3": (transformers.Qwen3Config, dict(head_dim=16, tie_word_embeddings=True, attention_bias=False,
                                             rope_parameters={"rope_type": "default", "rope_theta": 1000000.0})),
    # Fused qkv_proj / gate_up_proj; longrope with original context 8: the 13-token batch (and the
    # generation once it passes position 8) uses long_factor, the 5-token prefill short_factor;
    # attention_factor sqrt(1 + ln(256/8)/ln 8) scales cos/sin. The window (10) is shorter than
    # the sequences, so it masks.
    "phi3": (transformers.Phi3Config, dict(tie_word_embeddings=False, sliding_window=10,
                                           original_max_position_embeddings=PHI3_ORIGINAL_CONTEXT,
                                           rope_parameters=PHI3_LONGROPE)),
    # The same with original context 16 and no window: the batch uses short_factor; generation
    # passes position 16 and switches (transformers recomputes its cache there).
    "phi3_short": (transformers.Phi3Config, dict(tie_word_embeddings=False, sliding_window=None,
                                                 original_max_position_embeddings=PHI3_SHORT_CONTEXT,
                                                 rope_parameters=dict(PHI3_LONGROPE,
                                                                      original_max_position_embeddings=PHI3_SHORT_CONTEXT))),
    "llama_yarn": (transformers.LlamaConfig, dict(head_dim=8, rope_parameters=LLAMA_YARN_ROPE, tie_word_embeddings=False)),
}


def check_versions():
    found = {"torch": torch.__version__.split("+")[0], "transformers": transformers.__version__, "peft": peft.__version__}
    if found != PINNED:
        sys.exit("hf_golden.py is pinned to %s, found %s" % (PINNED, found))


def build_model(family, seed):
    config_class, extra = FAMILIES[family]
    config = config_class(**COMMON, **extra)
    config._attn_implementation = "eager"
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(config, attn_implementation="eager").float().eval()
    with torch.no_grad():  # norms start at 1: perturb them so that their weights matter
        for name, parameter in model.named_parameters():
            if name.endswith("norm.weight"):
                parameter.add_(0.2 * torch.randn_like(parameter))
    return model


def golden_batch(vocab, seed):
    g = torch.Generator().manual_seed(seed + 1)
    ids = torch.full((2, SEQ), PAD_ID, dtype=torch.int64)
    mask = torch.zeros((2, SEQ), dtype=torch.int64)
    for b, n in enumerate(LENGTHS):
        ids[b, 0] = BOS_ID
        ids[b, 1:n] = torch.randint(3, vocab, (n - 1,), generator=g)
        mask[b, :n] = 1
    return ids, mask


def with_lora(base, adapter_dir=None):
    if adapter_dir is None:
        return peft.get_peft_model(base, peft.LoraConfig(**LORA))
    return peft.PeftModel.from_pretrained(base, adapter_dir, is_trainable=True)


def forward_backward(model, ids, mask):
    """Logits, HF's loss, d loss/d inputs_embeds and every LoRA gradient."""
    labels = ids.masked_fill(mask == 0, -100)
    embeds = model.get_input_embeddings()(ids).detach().requires_grad_(True)
    model.zero_grad(set_to_none=True)
    out = model(inputs_embeds=embeds, attention_mask=mask, labels=labels)
    out.loss.backward()
    # named_parameters says lora_A.default.weight; the saved adapter (and the C++ test) lora_A.weight.
    grads = {name.replace(".default.", "."): p.grad.detach().clone()
             for name, p in model.named_parameters() if p.requires_grad}
    assert grads and all(float(g.abs().max()) > 0 for g in grads.values()), "a LoRA gradient is zero"
    return {"logits": out.logits.detach(), "loss": out.loss.detach(), "dembed": embeds.grad.detach(), "grads": grads}


def full_forward_backward(model, ids, mask, trainable_only=False):
    """Full finetuning: gradients of every weight (a tied embedding gets both of its uses); with
    trainable_only, of the parameters that require them (peft_extras_golden.py)."""
    labels = ids.masked_fill(mask == 0, -100)
    saved = {}

    def keep_embedding_output(module, inputs, output):
        if not output.requires_grad:  # nothing trainable below the first adapted layer (layers_to_transform)
            output.requires_grad_(True)
        output.retain_grad()
        saved["h0"] = output
    hook = model.get_input_embeddings().register_forward_hook(keep_embedding_output)
    model.zero_grad(set_to_none=True)
    out = model(input_ids=ids, attention_mask=mask, labels=labels)
    out.loss.backward()
    hook.remove()
    grads = {name: p.grad.detach().clone() for name, p in model.named_parameters() if p.requires_grad or not trainable_only}
    return {"logits": out.logits.detach(), "loss": out.loss.detach(), "dembed": saved["h0"].grad.detach(), "grads": grads}


def greedy(model, prompt):
    out = model.generate(input_ids=torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.int64),
                         max_new_tokens=GEN_NEW_TOKENS, min_new_tokens=GEN_NEW_TOKENS, do_sample=False,
                         output_scores=True, return_dict_in_generate=True, pad_token_id=PAD_ID)
    ids = out.sequences[0, len(prompt):].tolist()
    margins = [float(s[0].topk(2).values[0] - s[0].topk(2).values[1]) for s in out.scores]
    return ids, margins


def pick_prompt(model, vocab, seed):
    """Of 64 random 5-token prompts, the one whose greedy run has the widest smallest top-1/top-2 gap,
    with no EOS (so stopping at EOS cannot matter) and at least GEN_MIN_DISTINCT different tokens."""
    g = torch.Generator().manual_seed(seed + 2)
    best = None
    for _ in range(64):
        prompt = [BOS_ID] + torch.randint(3, vocab, (4,), generator=g).tolist()
        ids, margins = greedy(model, prompt)
        if EOS_ID in ids or len(set(ids)) < GEN_MIN_DISTINCT:
            continue
        if best is None or min(margins) > min(best[2]):
            best = (prompt, ids, margins)
    assert best is not None and min(best[2]) > GEN_MIN_MARGIN, "no usable generation prompt"
    return best


def nf4_round_trip(model):
    """The model with every linear weight replaced by its bitsandbytes NF4 + double-quant round trip.
    Phi-3's fused qkv_proj and gate_up_proj are quantized piece by piece (q, k, v; gate, up), as vktune
    keeps them (engine/model/weights.cpp): the 4-bit codes and block absmax equal the whole tensor's
    when each piece is a whole number of 64-element blocks, only the double quantization's groups differ."""
    config = model.config
    state = {}
    for name, tensor in model.state_dict().items():
        if name.endswith("_proj.weight"):
            if name.endswith("qkv_proj.weight"):
                head_dim = config.hidden_size // config.num_attention_heads
                q, kv = config.num_attention_heads * head_dim, config.num_key_value_heads * head_dim
                pieces = torch.split(tensor, [q, kv, kv])
            elif name.endswith("gate_up_proj.weight"):
                pieces = torch.split(tensor, [config.intermediate_size] * 2)
            else:
                pieces = [tensor]
            assert all(p.numel() % 64 == 0 for p in pieces)
            tensor = torch.cat([torch.from_numpy(nf4.dequantize_nf4(nf4.quantize_nf4(p.contiguous().numpy())))
                                for p in pieces])
        state[name] = tensor
    return state


def check_family_features(family, config):
    """The features each family is here to exercise really are exercised."""
    if family == "llama3":  # all three llama3 RoPE bands hold at least one frequency
        rope = config.rope_parameters
        inv_freq = 1.0 / rope["rope_theta"] ** (torch.arange(0, config.head_dim, 2).double() / config.head_dim)
        wavelen = 2 * torch.pi / inv_freq
        old = rope["original_max_position_embeddings"]
        high, low = old / rope["high_freq_factor"], old / rope["low_freq_factor"]
        bands = [int((wavelen < high).sum()), int(((wavelen >= high) & (wavelen <= low)).sum()), int((wavelen > low).sum())]
        assert min(bands) >= 1, "llama3 RoPE bands %s" % bands
    if family == "mistral":  # the window is on, and longer than anything attended here
        assert config.sliding_window > SEQ and config.sliding_window > 5 + GEN_NEW_TOKENS
    if family == "qwen3":
        assert config.head_dim * config.num_attention_heads != config.hidden_size
    if family == "phi3":  # the batch uses the long factors, the prefill the short ones; the window masks
        rope = config.rope_parameters
        assert rope["rope_type"] == "longrope" and rope["original_max_position_embeddings"] == PHI3_ORIGINAL_CONTEXT
        assert 5 <= PHI3_ORIGINAL_CONTEXT < SEQ and config.sliding_window < SEQ
        assert rope["short_factor"] != rope["long_factor"]
    if family == "phi3_short":  # the batch uses the short factors, generation crosses to the long ones
        rope = config.rope_parameters
        assert rope["original_max_position_embeddings"] == PHI3_SHORT_CONTEXT and SEQ <= PHI3_SHORT_CONTEXT
        assert PHI3_SHORT_CONTEXT < 5 + GEN_NEW_TOKENS and config.sliding_window is None
    assert config.num_key_value_heads < config.num_attention_heads and config.num_hidden_layers >= 2  # GQA


def make_family(family, seed, out_dir):
    base = build_model(family, seed)
    config = base.config
    check_family_features(family, config)
    full = full_forward_backward(build_model(family, seed), *golden_batch(config.vocab_size, seed)) \
        if family == "qwen3" else None
    folder = os.path.join(out_dir, family)
    adapter_dir = os.path.join(folder, "adapter")
    base.save_pretrained(folder, safe_serialization=True)
    nf4_state = nf4_round_trip(base)

    torch.manual_seed(seed + 3)  # init_lora_weights=False: A and B both random, so every gradient is nonzero
    model = with_lora(base)
    model.save_pretrained(adapter_dir)
    ids, mask = golden_batch(config.vocab_size, seed)
    rows = [("meta.json", np.frombuffer(json.dumps({"family": family, "lora": LORA, "versions": PINNED,
                                                    "loss": "transformers ForCausalLMLoss, mean over labels != -100"},
                                                   sort_keys=True).encode(), dtype=np.uint8))]

    def put(key, value, dtype=np.float32):
        value = value.detach().numpy() if torch.is_tensor(value) else np.asarray(value)
        rows.append((key, value.astype(dtype)))

    put("batch.ids", ids, np.int32)
    put("batch.weights", mask, np.float32)  # the C++ side weighs target t+1 by weights[t+1]
    put("batch.positions", torch.arange(SEQ).expand(2, SEQ), np.int32)
    put("batch.lengths", LENGTHS, np.int32)

    def put_result(prefix, result):
        put(prefix + ".logits", result["logits"])
        put(prefix + ".loss", result["loss"])
        put(prefix + ".dembed", result["dembed"])
        for name in sorted(result["grads"]):
            put(prefix + ".grad." + name, result["grads"][name])

    fp32 = forward_backward(model, ids, mask)
    put_result("fp32", fp32)
    # Right padding must not change the real tokens' logits: the short sequence alone gives the same.
    alone = model(input_ids=ids[1:, :LENGTHS[1]]).logits.detach()
    assert torch.allclose(alone[0], fp32["logits"][1, :LENGTHS[1]], atol=1e-5), "padding changed the logits"

    if full is not None:  # q_norm/k_norm weight gradients need full finetuning
        put_result("full", full)

    quantized = build_model(family, seed)
    quantized.load_state_dict(nf4_state, strict=False)
    nf4_result = forward_backward(with_lora(quantized, adapter_dir), ids, mask)
    put_result("nf4", nf4_result)

    prompt, gen_ids, margins = pick_prompt(model, config.vocab_size, seed)
    put("gen.prompt", prompt, np.int32)
    put("gen.ids", gen_ids, np.int32)
    put("gen.margin", margins)
    golden_io.write_golden(os.path.join(out_dir, family + ".golden.bin"), rows)
    print("%-8s loss %.6f, nf4 loss %.6f, %d LoRA gradients, generation %s -> %s (min top-2 gap %.3f)" %
          (family, float(fp32["loss"]), float(nf4_result["loss"]), len(fp32["grads"]), prompt, gen_ids, min(margins)))


def run(out_dir):
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    os.makedirs(out_dir, exist_ok=True)
    for index, family in enumerate(FAMILIES):
        make_family(family, 1000 + 100 * index, out_dir)


def differing_files(written, committed):
    """Files under `written` that are missing from `committed` or differ there (relative paths)."""
    mismatches = []
    for path, _, files in os.walk(written):
        for name in files:
            rel = os.path.relpath(os.path.join(path, name), written)
            if not os.path.exists(os.path.join(committed, rel)) or not filecmp.cmp(
                    os.path.join(path, name), os.path.join(committed, rel), shallow=False):
                mismatches.append(rel)
    return mismatches


def write_or_verify(run, out_dir, label):
    """run(out_dir); with --verify, run into a temporary folder instead and fail unless every file
    written equals the committed one in out_dir (`label` names that folder in the messages)."""
    if "--verify" not in sys.argv:
        run(out_dir)
        return
    with tempfile.TemporaryDirectory() as tmp:
        run(tmp)
        mismatches = differing_files(tmp, out_dir)
        if mismatches:
            sys.exit("differs from %s: %s" % (label, sorted(mismatches)))
        print("%s is what this script writes" % label)


def main():
    # PEFT writes the resolved "all-linear" target_modules from a Python set: fix the string hash
    # seed so that adapter_config.json lists them in the same order on every run.
    if os.environ.get("PYTHONHASHSEED") != "0":
        os.execve(sys.executable, [sys.executable] + sys.argv, dict(os.environ, PYTHONHASHSEED="0"))
    check_versions()
    if "--verify" in sys.argv:
        with tempfile.TemporaryDirectory() as tmp:
            run(tmp)
            compare = filecmp.dircmp(tmp, OUT)
            mismatches = differing_files(tmp, OUT)

            def walk(c, at):
                mismatches.extend(os.path.join(at, n) for n in c.left_only + c.right_only + c.diff_files)
                for name, sub in c.subdirs.items():
                    walk(sub, os.path.join(at, name))
            walk(compare, "")
            if mismatches:
                sys.exit("differs from tests/data/hf: %s" % sorted(set(mismatches)))
            print("tests/data/hf is what this script writes")
    else:
        run(OUT)


if __name__ == "__main__":
    main()
