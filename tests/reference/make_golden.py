#!/usr/bin/python3
"""Writes the golden reference data the C++ tests compare against (as llm.c's train_gpt2.py does).

Usage (torch 1.13+ and numpy; no transformers/peft/safetensors/bitsandbytes needed):
  /usr/bin/python3 tests/reference/make_golden.py            # (re)writes tests/data/golden/
  /usr/bin/python3 tests/reference/make_golden.py --out DIR  # writes elsewhere
  /usr/bin/python3 tests/reference/make_golden.py --verify   # regenerates into a temp dir and
                                                             # checks it against the committed files

For each tiny model ("llama", "qwen2") it builds deterministic random weights, saves them as a
Hugging Face folder (config.json, model.safetensors, adapter/ with a PEFT LoRA adapter), then
computes in fp32 with HF/PEFT semantics (see model.py): logits, weighted loss and gradients for
LoRA on the fp32 base, on an NF4+double-quant base, on an fp16-rounded base, a full finetune
(gradients of every base weight), 20 AdamW steps with warmup+cosine schedule, grad accumulation
and clipping, and greedy generation. Everything lands in tests/data/golden/<name>.golden.bin
(format: tests/reference/README.md). Self-checks run first; any failure aborts.
"""
import argparse
import copy
import filecmp
import json
import math
import os
import sys
import tempfile

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import golden_io  # noqa: E402
import model as M  # noqa: E402
import nf4  # noqa: E402

torch.set_num_threads(1)  # fixed reduction order: the files come out byte-identical on re-runs
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# ----------------------------------------------------------------------------------------------
# The two models. Sizes are odd on purpose (vocab 97/101, intermediate 264/90) so that no dimension
# is a multiple of a kernel tile; llama's MLP weights have 264 NF4 blocks (> 256: two nested
# double-quant blocks, the second partial); qwen2's MLP weights have 67.5 NF4 blocks (a partial
# last block of 32 values).
# ----------------------------------------------------------------------------------------------
MODELS = {
    "llama": {
        "config": {
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "hidden_size": 64,
            "intermediate_size": 264,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 4,
            "head_dim": 16,
            "hidden_act": "silu",
            "rms_norm_eps": 1e-05,
            "rope_theta": 10000.0,
            # original_max_position_embeddings 32 with head_dim 16: the 8 RoPE frequencies fall in
            # all three llama3 bands (1 unchanged, 1 smoothed, 6 divided by 8), at any length.
            "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                             "original_max_position_embeddings": 32, "rope_type": "llama3"},
            "vocab_size": 97,
            "tie_word_embeddings": False,
            "max_position_embeddings": 128,
            "bos_token_id": 1,
            "eos_token_id": 2,
            "torch_dtype": "float32",
            "attention_bias": False,
            "attention_dropout": 0.0,
            "mlp_bias": False,
            "initializer_range": 0.02,
            "pretraining_tp": 1,
            "use_cache": True,
            "transformers_version": "4.45.0",
        },
        "lora_r": 4, "lora_alpha": 1,   # scaling 0.25
        "lora_effect": 0.13, "lora_a_gain": 2.5,
        "seed": 1234,
        "embed_std": 1.0,
        "final_norm_gain": 1.0,
        "out_proj_gain": 1.0,
        "lm_head_gain": 2.0,            # logits std ~ 2: peaked enough for clear greedy choices
        "full_finetune": False,         # (its base gradients would add 0.6 MB; qwen2 covers them)
        "fp16_variant": False,          # (qwen2 covers it, with an F16 checkpoint)
    },
    "qwen2": {
        "config": {
            "architectures": ["Qwen2ForCausalLM"],
            "model_type": "qwen2",
            "hidden_size": 48,
            "intermediate_size": 90,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "head_dim": 12,
            "hidden_act": "silu",
            "rms_norm_eps": 1e-06,
            "rope_theta": 1000000.0,
            "vocab_size": 101,
            "tie_word_embeddings": True,
            "max_position_embeddings": 128,
            "bos_token_id": 1,
            "eos_token_id": 2,
            "torch_dtype": "float32",
            "attention_dropout": 0.0,
            "use_sliding_window": False,
            "sliding_window": None,
            "max_window_layers": 2,
            "initializer_range": 0.02,
            "use_cache": True,
            "transformers_version": "4.45.0",
        },
        "lora_r": 6, "lora_alpha": 1,   # scaling 1/6
        "lora_effect": 0.09, "lora_a_gain": 1.3,
        "seed": 4321,
        "embed_std": 1.0,
        "final_norm_gain": 0.3,         # tied head: logits std ~ 0.3 * sqrt(48) ~ 2
        "out_proj_gain": 4.0,           # layers outweigh the embedding in the residual stream, else
                                        # the tied head mostly predicts the current token again
        "lm_head_gain": None,
        "full_finetune": True,
        "fp16_variant": True,
    },
}

# Training recipe (section "train" of the golden file).
TRAIN = {
    "steps": 20, "micro_batches": 2, "batch": 2, "seq_len": 12, "dataset_micro_batches": 8,
    "lr": 5e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.01,
    "warmup_steps": 3, "max_grad_norm": 1.0,
}
GEN_NEW_TOKENS = 20
GEN_MIN_DISTINCT = 8
PROMPT_WEIGHT, COMPLETION_WEIGHT = 0.1, 1.0
PAD_ID = 0


# ----------------------------------------------------------------------------------------------
# Building the models
# ----------------------------------------------------------------------------------------------
def build_weights(spec):
    """{HF name: fp32 tensor}, deterministic from spec["seed"]. Linear weights ~ N(0, 1/in) (so
    activations stay O(1)), norms ~ 1 + 0.1 N(0,1) (so a missing norm weight is caught), biases
    ~ 0.2 N(0,1)."""
    cfg = M.Config(spec["config"])
    g = torch.Generator().manual_seed(spec["seed"])

    def normal(shape, std):
        return (torch.randn(shape, generator=g, dtype=torch.float32) * std).contiguous()

    w = {"model.embed_tokens.weight": normal((cfg.vocab, cfg.hidden), spec["embed_std"])}
    for i in range(cfg.layers):
        p = "model.layers.%d." % i
        w[p + "input_layernorm.weight"] = 1.0 + normal((cfg.hidden,), 0.1)
        for module, (out_f, in_f) in cfg.linear_shapes().items():
            gain = spec["out_proj_gain"] if module in ("self_attn.o_proj", "mlp.down_proj") else 1.0
            w[p + module + ".weight"] = normal((out_f, in_f), gain / math.sqrt(in_f))
            if cfg.has_bias(module):
                w[p + module + ".bias"] = normal((out_f,), 0.2)
        w[p + "post_attention_layernorm.weight"] = 1.0 + normal((cfg.hidden,), 0.1)
    w["model.norm.weight"] = spec["final_norm_gain"] * (1.0 + normal((cfg.hidden,), 0.1))
    if not cfg.tied:
        w["lm_head.weight"] = normal((cfg.vocab, cfg.hidden), spec["lm_head_gain"] / math.sqrt(cfg.hidden))
    return cfg, w


def build_adapter(spec, cfg):
    """{PEFT name: fp32 tensor}. Unlike PEFT's init (B = 0), both A and B are random so that every
    gradient is non-zero and the LoRA term changes the logits visibly: scaling * B @ A has about
    spec["lora_effect"] times the RMS of the base weight. lora_a_gain trades A's size against B's
    (same product) to balance their gradients; with these values the gradient norm sits around the
    clipping threshold 1.0, so some training steps clip and others do not."""
    g = torch.Generator().manual_seed(spec["seed"] + 1)
    r = spec["lora_r"]
    scaling = spec["lora_alpha"] / r
    lora = {}
    for i in range(cfg.layers):
        for module, (out_f, in_f) in cfg.linear_shapes().items():
            prefix = "base_model.model.model.layers.%d.%s" % (i, module)
            # (scaling * B A)_ij has std scaling * sqrt(r) * std_A * std_B; the base weight has 1/sqrt(in).
            std_a = spec["lora_a_gain"] / math.sqrt(in_f)
            std_b = spec["lora_effect"] / (scaling * math.sqrt(r) * spec["lora_a_gain"])
            lora[prefix + ".lora_A.weight"] = torch.randn((r, in_f), generator=g) * std_a
            lora[prefix + ".lora_B.weight"] = torch.randn((out_f, r), generator=g) * std_b
    return lora, scaling


def adapter_config(spec):
    return {
        "alpha_pattern": {},
        "auto_mapping": None,
        "base_model_name_or_path": "..",
        "bias": "none",
        "fan_in_fan_out": False,
        "inference_mode": True,
        "init_lora_weights": True,
        "layers_pattern": None,
        "layers_to_transform": None,
        "lora_alpha": spec["lora_alpha"],
        "lora_dropout": 0.0,
        "modules_to_save": None,
        "peft_type": "LORA",
        "r": spec["lora_r"],
        "rank_pattern": {},
        "revision": None,
        "target_modules": M.TARGET_MODULES,
        "task_type": "CAUSAL_LM",
        "use_dora": False,
        "use_rslora": False,
    }


def to_numpy(tensors, dtype=np.float32):
    return {k: v.detach().cpu().numpy().astype(dtype) for k, v in tensors.items()}


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.write("\n")


# ----------------------------------------------------------------------------------------------
# NF4 checkpoint (bitsandbytes serialisation, as transformers saves a load_in_4bit model)
# ----------------------------------------------------------------------------------------------
QUANTIZATION_CONFIG = {
    "_load_in_4bit": True,
    "_load_in_8bit": False,
    "bnb_4bit_compute_dtype": "float32",
    "bnb_4bit_quant_storage": "uint8",
    "bnb_4bit_quant_type": "nf4",
    "bnb_4bit_use_double_quant": True,
    "llm_int8_enable_fp32_cpu_offload": False,
    "llm_int8_has_fp16_weight": False,
    "llm_int8_skip_modules": None,
    "llm_int8_threshold": 6.0,
    "load_in_4bit": True,
    "load_in_8bit": False,
    "quant_method": "bitsandbytes",
}


def quantize_model_nf4(cfg, weights):
    """Returns (safetensors dict in bnb layout, {name: dequantized fp32 tensor}, {name: state})."""
    tensors, dequant, states = {}, {}, {}
    for name, w in weights.items():
        module = name.rsplit(".", 1)[0]
        if name.endswith(".weight") and module.split(".", 3)[-1] in M.LINEAR_NAMES:
            state = nf4.quantize_nf4(w.numpy())
            states[name] = state
            tensors[name] = state["weight"]
            tensors[name + ".absmax"] = state["absmax"]
            tensors[name + ".quant_map"] = state["quant_map"]
            tensors[name + ".nested_absmax"] = state["nested_absmax"]
            tensors[name + ".nested_quant_map"] = state["nested_quant_map"]
            # QuantState.as_dict(packed=True): the non-tensor items as JSON bytes (json.dumps defaults)
            packed = {"quant_type": "nf4", "blocksize": state["blocksize"], "dtype": "float32",
                      "shape": list(state["shape"]), "nested_blocksize": state["nested_blocksize"],
                      "nested_dtype": "float32", "nested_offset": float(state["offset"])}
            tensors[name + ".quant_state.bitsandbytes__nf4"] = np.frombuffer(
                json.dumps(packed).encode("utf-8"), dtype=np.uint8).copy()
            dequant[name] = torch.from_numpy(nf4.dequantize_nf4(state))
        else:
            tensors[name] = w.numpy()
            dequant[name] = w
    return tensors, dequant, states


# ----------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------
def golden_batch(cfg, seed):
    """2 sequences of 13 and 9 tokens, right-padded to 13 with PAD_ID (weight 0)."""
    g = torch.Generator().manual_seed(seed + 2)
    lengths, prompt_lengths, T = [13, 9], [6, 4], 13
    ids = torch.full((2, T), PAD_ID, dtype=torch.int64)
    w = torch.zeros((2, T), dtype=torch.float32)
    for b, (n, p) in enumerate(zip(lengths, prompt_lengths)):
        ids[b, 0] = 1  # bos
        ids[b, 1:n] = torch.randint(3, cfg.vocab, (n - 1,), generator=g)
        w[b, :p] = PROMPT_WEIGHT
        w[b, p:n] = COMPLETION_WEIGHT
    positions = torch.arange(T, dtype=torch.int64).expand(2, T).contiguous()
    return ids, w, positions, torch.tensor(lengths, dtype=torch.int64)


def training_data(cfg, seed):
    """(steps, micro, B, T) ids and weights: a dataset of 8 micro-batches seen in order, 2 per step
    (5 epochs in 20 steps, so the loss visibly falls). Each sequence: bos, then a walk
    t -> (5 t + 3) mod (V - 3) + 3 from a random start (something to learn); random length 6..12,
    prompt length 2..len-3; right padding."""
    g = torch.Generator().manual_seed(seed + 3)
    S, Mi, B, T = TRAIN["steps"], TRAIN["micro_batches"], TRAIN["batch"], TRAIN["seq_len"]
    D = TRAIN["dataset_micro_batches"]
    data_ids = torch.full((D, B, T), PAD_ID, dtype=torch.int64)
    data_w = torch.zeros((D, B, T), dtype=torch.float32)
    for d in range(D):
        for b in range(B):
            n = int(torch.randint(6, T + 1, (1,), generator=g))
            p = int(torch.randint(2, n - 2, (1,), generator=g))
            t = int(torch.randint(3, cfg.vocab, (1,), generator=g))
            seq = [1]
            for _ in range(n - 1):
                seq.append(t)
                t = (5 * t + 3) % (cfg.vocab - 3) + 3
            data_ids[d, b, :n] = torch.tensor(seq)
            data_w[d, b, :p] = PROMPT_WEIGHT
            data_w[d, b, p:n] = COMPLETION_WEIGHT
    order = torch.arange(S * Mi) % D
    return data_ids[order].view(S, Mi, B, T).contiguous(), data_w[order].view(S, Mi, B, T).contiguous()


def positions_for(ids):
    B, T = ids.shape
    return torch.arange(T, dtype=torch.int64).expand(B, T).contiguous()


# ----------------------------------------------------------------------------------------------
# The computations
# ----------------------------------------------------------------------------------------------
def lora_forward_backward(cfg, weights, lora, scaling, ids, w, positions):
    """fp32 LoRA forward + backward: logits, loss, loss_sum, weight_sum, d loss/d h0, d loss/d lora."""
    params = {k: v.detach().clone().requires_grad_(True) for k, v in lora.items()}
    logits, h0 = M.forward(cfg, weights, ids, positions, params, scaling, embed_grad=True)
    loss_sum, weight_sum = M.weighted_loss_sum(logits, ids, w)
    loss = loss_sum / weight_sum
    loss.backward()
    return {
        "logits": logits.detach(), "loss": loss.detach(), "loss_sum": loss_sum.detach(),
        "weight_sum": weight_sum.detach(), "dembed": h0.grad.detach(),
        "grads": {k: v.grad.detach() for k, v in params.items()},
    }


def full_forward_backward(cfg, weights, ids, w, positions):
    """Full finetune: no adapter; gradients of every base weight (tied: one embedding gradient that
    sums the input-embedding and the output-projection contributions)."""
    params = {k: v.detach().clone().requires_grad_(True) for k, v in weights.items()}
    logits, h0 = M.forward(cfg, params, ids, positions, embed_grad=True)
    loss_sum, weight_sum = M.weighted_loss_sum(logits, ids, w)
    loss = loss_sum / weight_sum
    loss.backward()
    grads = {k: v.grad.detach() for k, v in params.items()}
    # h0 is detached from the embedding table in forward(embed_grad=True); add the input side back.
    emb = "model.embed_tokens.weight"
    grads[emb] = grads[emb] if grads[emb] is not None else torch.zeros_like(weights[emb])
    grads[emb] = grads[emb].index_add(0, ids.reshape(-1), h0.grad.reshape(-1, cfg.hidden))
    return {"logits": logits.detach(), "loss": loss.detach(), "dembed": h0.grad.detach(), "grads": grads}


def cosine_lambda(step):
    """transformers.get_cosine_schedule_with_warmup (num_cycles 0.5) multiplier for `step`."""
    warmup, total = TRAIN["warmup_steps"], TRAIN["steps"]
    if step < warmup:
        return float(step) / float(max(1, warmup))
    progress = float(step - warmup) / float(max(1, total - warmup))
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * 0.5 * 2.0 * progress)))


def train(cfg, weights, lora, scaling, data_ids, data_w):
    """20 optimizer steps; each: 2 micro-batches, loss normalised by the weight sum of both,
    clip_grad_norm_(1.0), AdamW, then the LambdaLR scheduler step (step k uses lr * lambda(k))."""
    params = {k: v.detach().clone().requires_grad_(True) for k, v in lora.items()}
    order = sorted(params)
    opt = torch.optim.AdamW([params[k] for k in order], lr=TRAIN["lr"], betas=TRAIN["betas"],
                            eps=TRAIN["eps"], weight_decay=TRAIN["weight_decay"], foreach=False)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, cosine_lambda)
    losses, norms, lrs, coefs = [], [], [], []
    for s in range(TRAIN["steps"]):
        opt.zero_grad(set_to_none=False)
        total_w = data_w[s][:, :, 1:].sum()
        step_loss = torch.zeros((), dtype=torch.float32)
        for m in range(TRAIN["micro_batches"]):
            ids = data_ids[s, m]
            logits, _ = M.forward(cfg, weights, ids, positions_for(ids), params, scaling)
            loss_sum, _ = M.weighted_loss_sum(logits, ids, data_w[s, m])
            (loss_sum / total_w).backward()
            step_loss = step_loss + loss_sum.detach()
        lrs.append(opt.param_groups[0]["lr"])
        norm = torch.nn.utils.clip_grad_norm_([params[k] for k in order], TRAIN["max_grad_norm"])
        coefs.append(min(1.0, float(TRAIN["max_grad_norm"] / (norm + 1e-6))))
        opt.step()
        sched.step()
        losses.append(float(step_loss / total_w))
        norms.append(float(norm))
    return {"losses": losses, "grad_norms": norms, "lrs": lrs, "clip_coefs": coefs,
            "final": {k: v.detach() for k, v in params.items()}}


@torch.no_grad()
def greedy(cfg, weights, lora, scaling, prompt, new_tokens):
    """Argmax decoding (recomputes the whole sequence each step; no EOS stop). Returns the new ids
    and, per step, the gap between the two largest logits."""
    seq = list(prompt)
    out, margins = [], []
    for _ in range(new_tokens):
        ids = torch.tensor([seq], dtype=torch.int64)
        logits, _ = M.forward(cfg, weights, ids, positions_for(ids), lora, scaling)
        top2 = torch.topk(logits[0, -1], 2)
        out.append(int(top2.indices[0]))
        margins.append(float(top2.values[0] - top2.values[1]))
        seq.append(out[-1])
    return out, margins


def pick_prompt(cfg, weights, lora, scaling, seed):
    """Among 256 random 5-token prompts (bos first), the one whose greedy run has the largest
    smallest top-1/top-2 gap, never produces EOS (so 'stop at EOS' cannot change the result) and
    has at least GEN_MIN_DISTINCT different tokens (a run stuck on one token tests little)."""
    g = torch.Generator().manual_seed(seed + 5)
    best = None
    for _ in range(256):
        prompt = [1] + torch.randint(3, cfg.vocab, (4,), generator=g).tolist()
        ids, margins = greedy(cfg, weights, lora, scaling, prompt, GEN_NEW_TOKENS)
        if cfg.hf["eos_token_id"] in ids or len(set(ids)) < GEN_MIN_DISTINCT:
            continue
        if best is None or min(margins) > min(best[2]):
            best = (prompt, ids, margins)
    return best


# ----------------------------------------------------------------------------------------------
# Self-checks (independent re-implementations; any failure raises)
# ----------------------------------------------------------------------------------------------
def naive_forward_numpy(cfg, weights, lora, scaling, ids):
    """float64 numpy forward with explicit loops for RoPE and attention and merged LoRA weights
    (W + scaling * B A): shares no code with model.py."""
    W = {k: v.detach().numpy().astype(np.float64) for k, v in weights.items()}
    if lora is not None:
        for k, a in lora.items():
            if k.endswith(".lora_A.weight"):
                base = k[len("base_model.model."):-len(".lora_A.weight")] + ".weight"
                b = lora[k.replace("lora_A", "lora_B")].detach().numpy().astype(np.float64)
                W[base] = W[base] + scaling * (b @ a.detach().numpy().astype(np.float64))
    D, Hq, Hkv = cfg.head_dim, cfg.heads, cfg.kv_heads
    inv_freq = M.rope_inv_freq(cfg).numpy().astype(np.float64)  # the band logic is checked separately

    def norm(x, w):
        return w * x / np.sqrt((x * x).mean(-1, keepdims=True) + cfg.eps)

    def rope(x, pos):  # x: (D,), pairs (j, j + D/2) rotate by pos * inv_freq[j]
        y = x.copy()
        for j in range(D // 2):
            c, s = math.cos(pos * inv_freq[j]), math.sin(pos * inv_freq[j])
            y[j] = x[j] * c - x[j + D // 2] * s
            y[j + D // 2] = x[j + D // 2] * c + x[j] * s
        return y

    def lin(x, name):
        y = x @ W[name + ".weight"].T
        return y + W[name + ".bias"] if name + ".bias" in W else y

    out = []
    for seq in ids.numpy():
        T = len(seq)
        h = W["model.embed_tokens.weight"][seq]
        for i in range(cfg.layers):
            p = "model.layers.%d." % i
            x = norm(h, W[p + "input_layernorm.weight"])
            q = lin(x, p + "self_attn.q_proj").reshape(T, Hq, D)
            k = lin(x, p + "self_attn.k_proj").reshape(T, Hkv, D)
            v = lin(x, p + "self_attn.v_proj").reshape(T, Hkv, D)
            att = np.zeros((T, Hq, D))
            for hq in range(Hq):
                hk = hq // (Hq // Hkv)
                for t in range(T):
                    qt = rope(q[t, hq], t)
                    scores = np.array([rope(k[u, hk], u) @ qt / math.sqrt(D) for u in range(t + 1)])
                    pr = np.exp(scores - scores.max())
                    pr /= pr.sum()
                    att[t, hq] = sum(pr[u] * v[u, hk] for u in range(t + 1))
            h = h + lin(att.reshape(T, Hq * D), p + "self_attn.o_proj")
            x = norm(h, W[p + "post_attention_layernorm.weight"])
            gate, up = lin(x, p + "mlp.gate_proj"), lin(x, p + "mlp.up_proj")
            h = h + lin(gate / (1 + np.exp(-gate)) * up, p + "mlp.down_proj")
        lm = W["model.embed_tokens.weight"] if cfg.tied else W["lm_head.weight"]
        out.append(norm(h, W["model.norm.weight"]) @ lm.T)
    return np.stack(out)


def check(cond, what):
    if not cond:
        raise AssertionError("self-check failed: " + what)
    print("  ok  " + what)


def check_llama3_bands(cfg):
    """Recompute the llama3 RoPE frequencies band by band in float64 from the paper's description."""
    sc = cfg.rope_scaling
    base = 1.0 / cfg.theta ** (np.arange(0, cfg.head_dim, 2) / cfg.head_dim)
    old = sc["original_max_position_embeddings"]
    expect, bands = [], []
    for f in base:
        wavelen = 2 * math.pi / f
        if wavelen < old / sc["high_freq_factor"]:
            expect.append(f); bands.append("keep")
        elif wavelen > old / sc["low_freq_factor"]:
            expect.append(f / sc["factor"]); bands.append("divide")
        else:
            smooth = (old / wavelen - sc["low_freq_factor"]) / (sc["high_freq_factor"] - sc["low_freq_factor"])
            expect.append((1 - smooth) * f / sc["factor"] + smooth * f); bands.append("smooth")
    got = M.rope_inv_freq(cfg).numpy()
    check(np.allclose(got, expect, rtol=1e-6, atol=0), "llama3 rope frequencies (bands %s)" % bands)
    check({"keep", "divide", "smooth"} <= set(bands), "llama3 rope: every band is exercised")


def gradcheck_tiny():
    """torch.autograd.gradcheck in float64 on a tiny GQA qwen2-like model with biases + LoRA."""
    hf = dict(MODELS["qwen2"]["config"], hidden_size=8, intermediate_size=6, num_hidden_layers=1,
              num_attention_heads=2, num_key_value_heads=1, head_dim=4, vocab_size=11)
    spec = dict(MODELS["qwen2"], config=hf, lora_r=2, lora_alpha=4, seed=7)
    cfg, weights = build_weights(spec)
    lora, scaling = build_adapter(spec, cfg)
    weights = {k: v.double() for k, v in weights.items()}
    ids = torch.tensor([[1, 5, 7, 3, 9], [1, 4, 10, 0, 0]])
    w = torch.tensor([[0.1, 0.1, 1.0, 1.0, 1.0], [0.1, 1.0, 1.0, 0.0, 0.0]], dtype=torch.float64)
    names = sorted(lora)[:4]
    h0 = weights["model.embed_tokens.weight"][ids].clone().requires_grad_(True)

    def f(h, *tensors):
        lo = {k: v.double() for k, v in lora.items()}
        lo.update(dict(zip(names, tensors)))
        logits, _ = M.forward(cfg, weights, ids, positions_for(ids), lo, scaling, inputs_embeds=h)
        loss_sum, weight_sum = M.weighted_loss_sum(logits, ids, w)
        return loss_sum / weight_sum

    inputs = [h0] + [lora[k].double().clone().requires_grad_(True) for k in names]
    check(torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-7, rtol=1e-5),
          "gradcheck (float64) of loss wrt embedding output and LoRA A/B")


def check_adamw_formula():
    """torch.optim.AdamW == the formula written in the README, for a few steps (incl. lr 0)."""
    g = torch.Generator().manual_seed(11)
    p = torch.randn(37, generator=g)
    grads = [torch.randn(37, generator=g) for _ in range(4)]
    lrs = [0.0, 1e-3, 5e-4, 2e-3]
    tp = p.clone().requires_grad_(True)
    opt = torch.optim.AdamW([tp], lr=1.0, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01, foreach=False)
    x, m, v = p.double().numpy().copy(), np.zeros(37), np.zeros(37)
    for t, (gr, lr) in enumerate(zip(grads, lrs), start=1):
        opt.param_groups[0]["lr"] = lr
        tp.grad = gr.clone()
        opt.step()
        gd = gr.double().numpy()
        x = x * (1 - lr * 0.01)
        m = 0.9 * m + 0.1 * gd
        v = 0.999 * v + 0.001 * gd * gd
        x = x - (lr / (1 - 0.9 ** t)) * m / (np.sqrt(v) / math.sqrt(1 - 0.999 ** t) + 1e-8)
    check(np.allclose(tp.detach().numpy(), x, rtol=0, atol=1e-6), "AdamW update formula (README) == torch")


def check_bnb_default_backend(weight, state):
    """Transcription of bitsandbytes' pure-torch 'default' backend quantize_4bit +
    quantize_blockwise(nested) applied to the same weight: must give the same bytes."""
    code = torch.from_numpy(nf4.NF4_CODE)
    A = torch.from_numpy(weight).reshape(-1).float()
    n, bs = A.numel(), 64
    rem = n % bs
    full = n - rem
    A_com = A[:full].reshape(full // bs, bs)
    absmax = A_com.abs().max(dim=-1)[0]
    scaled = torch.clamp(A_com * (1.0 / absmax.clamp(min=1e-38).view(-1, 1)), -1, 1).reshape(-1)
    if rem:
        am = A[full:].abs().max().clamp(min=1e-38)
        absmax = torch.cat([absmax, am.unsqueeze(0)])
        scaled = torch.cat([scaled, torch.clamp(A[full:] / am, -1, 1)])
    q = torch.bucketize(scaled, (code[:-1] + code[1:]) / 2, out_int32=True).to(torch.uint8)
    packed = ((q[::2] << 4) | q[1::2]).unsqueeze(1)
    offset = absmax.mean()
    dmap = torch.from_numpy(nf4.DYNAMIC_MAP)
    y = absmax - offset
    ny = y.numel()
    blocks = (ny + 255) // 256
    qa, nested = [], []
    for c in range(blocks):
        seg = y[c * 256:(c + 1) * 256]
        am = seg.abs().max().clamp(min=1e-38)
        nested.append(am)
        qa.append(torch.bucketize(torch.clamp(seg * (1.0 / am), -1, 1), (dmap[:-1] + dmap[1:]) / 2, out_int32=True))
    # The offset is torch's float32 mean there (its summation order), ours the exactly rounded mean:
    # they may differ by an ulp, and nested_absmax = max|absmax - offset| with them.
    ulp = float(np.spacing(np.float32(abs(float(offset)))))
    return (np.array_equal(packed.numpy(), state["weight"]),
            np.array_equal(torch.cat(qa).to(torch.uint8).numpy(), state["absmax"]),
            np.allclose(torch.stack(nested).numpy(), state["nested_absmax"], rtol=0, atol=2 * ulp),
            abs(float(offset) - float(state["offset"])) <= ulp)


def bnb_dynamic_map_torch():
    """bitsandbytes.functional.create_dynamic_map(signed=True), transcribed with torch ops."""
    data = []
    for i in range(7):
        boundaries = torch.linspace(0.1, 1, 2 ** i + 1, dtype=torch.float32)
        means = (boundaries[:-1] + boundaries[1:]) / 2.0
        data += ((10 ** (-6 + i)) * means).tolist()
        data += (-(10 ** (-6 + i)) * means).tolist()
    data += [0, 1.0]
    data.sort()
    return torch.tensor(data, dtype=torch.float32).numpy()


# ----------------------------------------------------------------------------------------------
# One model
# ----------------------------------------------------------------------------------------------
def make_model(name, spec, out_dir, report):
    print("== %s" % name)
    cfg, weights = build_weights(spec)
    lora, scaling = build_adapter(spec, cfg)
    folder = os.path.join(out_dir, name)
    os.makedirs(os.path.join(folder, "adapter"), exist_ok=True)
    write_json(os.path.join(folder, "config.json"), spec["config"])
    golden_io.write_safetensors(os.path.join(folder, "model.safetensors"), to_numpy(weights))
    write_json(os.path.join(folder, "adapter", "adapter_config.json"), adapter_config(spec))
    golden_io.write_safetensors(os.path.join(folder, "adapter", "adapter_model.safetensors"), to_numpy(lora))

    ids, w, positions, lengths = golden_batch(cfg, spec["seed"])
    rows = {}  # name -> numpy, in file order

    def put(key, value, dtype=np.float32):
        value = value.detach().numpy() if torch.is_tensor(value) else np.asarray(value)
        rows[key] = value.astype(dtype)

    meta = {
        "model": name, "config": spec["config"], "lora_r": spec["lora_r"], "lora_alpha": spec["lora_alpha"],
        "lora_scaling": scaling, "pad_id": PAD_ID, "prompt_weight": PROMPT_WEIGHT,
        "completion_weight": COMPLETION_WEIGHT, "train": dict(TRAIN, betas=list(TRAIN["betas"])),
        "loss": "sum_t w[t+1]*CE(logits[t], ids[t+1]) / sum_t>=1 w[t]",
    }

    put("batch.ids", ids, np.int32)
    put("batch.weights", w)
    put("batch.positions", positions, np.int32)
    put("batch.lengths", lengths, np.int32)

    def put_lora_result(prefix, res):
        put(prefix + ".logits", res["logits"])
        put(prefix + ".loss", res["loss"])
        put(prefix + ".loss_sum", res["loss_sum"])
        put(prefix + ".weight_sum", res["weight_sum"])
        put(prefix + ".dembed", res["dembed"])
        for k in sorted(res["grads"]):
            put(prefix + ".grad." + k, res["grads"][k])

    # --- fp32 base + LoRA
    fp32 = lora_forward_backward(cfg, weights, lora, scaling, ids, w, positions)
    put_lora_result("fp32", fp32)
    base_logits, _ = M.forward(cfg, weights, ids, positions)
    real = torch.zeros(ids.shape, dtype=torch.bool)
    for b, n in enumerate(lengths.tolist()):
        real[b, :n] = True
    lora_effect = float((fp32["logits"] - base_logits)[real].norm() / base_logits[real].norm())
    report[name] = {"fp32.loss": float(fp32["loss"]), "lora_effect_on_logits": lora_effect}
    print("  fp32 loss %.6f (LoRA changes the logits by %.0f%%)" % (float(fp32["loss"]), 100 * lora_effect))

    # --- full finetune (no adapter)
    if spec["full_finetune"]:
        full = full_forward_backward(cfg, weights, ids, w, positions)
        put("full.logits", full["logits"])
        put("full.loss", full["loss"])
        put("full.dembed", full["dembed"])
        for k in sorted(full["grads"]):
            put("full.grad." + k, full["grads"][k])
        report[name]["full.loss"] = float(full["loss"])

    # --- NF4 + double quant base + LoRA
    tensors, dequant, states = quantize_model_nf4(cfg, weights)
    nf4_folder = os.path.join(out_dir, name + "-nf4")
    os.makedirs(nf4_folder, exist_ok=True)
    write_json(os.path.join(nf4_folder, "config.json"), dict(spec["config"], quantization_config=QUANTIZATION_CONFIG))
    golden_io.write_safetensors(os.path.join(nf4_folder, "model.safetensors"), tensors)
    res = lora_forward_backward(cfg, dequant, lora, scaling, ids, w, positions)
    put_lora_result("nf4", res)
    spot = "model.layers.1.self_attn.k_proj.weight"
    put("nf4.dequant." + spot, dequant[spot])
    report[name]["nf4.loss"] = float(res["loss"])

    # --- fp16-rounded base + LoRA (compute in fp32); the same weights saved as an F16 checkpoint
    if spec["fp16_variant"]:
        rounded = {k: v.half().float() for k, v in weights.items()}
        res = lora_forward_backward(cfg, rounded, lora, scaling, ids, w, positions)
        put_lora_result("fp16", res)
        report[name]["fp16.loss"] = float(res["loss"])
        f16_folder = os.path.join(out_dir, name + "-f16")
        os.makedirs(f16_folder, exist_ok=True)
        write_json(os.path.join(f16_folder, "config.json"), dict(spec["config"], torch_dtype="float16"))
        golden_io.write_safetensors(os.path.join(f16_folder, "model.safetensors"), to_numpy(weights, np.float16))

    # --- training
    data_ids, data_w = training_data(cfg, spec["seed"])
    tr = train(cfg, weights, lora, scaling, data_ids, data_w)
    put("train.ids", data_ids, np.int32)
    put("train.weights", data_w)
    put("train.lr", tr["lrs"], np.float64)
    put("train.loss", tr["losses"])
    put("train.grad_norm", tr["grad_norms"])
    put("train.clip_coef", tr["clip_coefs"])
    for k in sorted(tr["final"]):
        put("train.final." + k, tr["final"][k])
    report[name]["train.loss"] = tr["losses"]
    report[name]["train.grad_norm"] = tr["grad_norms"]
    report[name]["train.lr"] = tr["lrs"]

    # --- greedy generation
    prompt, gen_ids, margins = pick_prompt(cfg, weights, lora, scaling, spec["seed"])
    put("gen.prompt", prompt, np.int32)
    put("gen.ids", gen_ids, np.int32)
    put("gen.margin", margins)
    report[name]["gen"] = {"prompt": prompt, "ids": gen_ids, "min_margin": min(margins)}
    print("  generation %s -> %s (min top-2 gap %.3f)" % (prompt, gen_ids, min(margins)))

    report[name]["fp32_vs_fp64"] = fp64_drift(cfg, weights, lora, scaling, ids, w, positions, fp32, tr,
                                              data_ids, data_w)
    print("  fp32 vs fp64 rerun: %s" % report[name]["fp32_vs_fp64"])

    meta_bytes = json.dumps(meta, sort_keys=True).encode("utf-8")
    tensors_out = [("meta.json", np.frombuffer(meta_bytes, dtype=np.uint8))] + list(rows.items())
    golden_io.write_golden(os.path.join(out_dir, name + ".golden.bin"), tensors_out)

    self_check(name, spec, cfg, weights, lora, scaling, ids, w, positions, lengths, fp32, states, tr, margins,
               data_ids, data_w, out_dir)


def nmse(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(((a - b) ** 2).sum() / max((b ** 2).sum(), 1e-300))


def fp64_drift(cfg, weights, lora, scaling, ids, w, positions, fp32, tr, data_ids, data_w):
    """The same computations in float64: how far the fp32 golden values are from exact. A C++
    implementation cannot be expected to agree with the golden data better than this."""
    w64 = {k: v.double() for k, v in weights.items()}
    l64 = {k: v.double() for k, v in lora.items()}
    ref = lora_forward_backward(cfg, w64, l64, scaling, ids, w.double(), positions)
    logits_rel = float((fp32["logits"].double() - ref["logits"]).abs().max() / ref["logits"].abs().max())
    grad_nmse = max(nmse(fp32["grads"][k], ref["grads"][k]) for k in ref["grads"])
    dembed_nmse = nmse(fp32["dembed"], ref["dembed"])
    tr64 = train(cfg, w64, l64, scaling, data_ids, data_w.double())
    loss_rel = max(abs(a - b) / b for a, b in zip(tr["losses"], tr64["losses"]))
    final_nmse = max(nmse(tr["final"][k], tr64["final"][k]) for k in tr64["final"])
    return {"logits_max_rel": logits_rel, "lora_grad_nmse_max": grad_nmse, "dembed_nmse": dembed_nmse,
            "train_loss_max_rel": loss_rel, "final_adapter_nmse_max": final_nmse}


def self_check(name, spec, cfg, weights, lora, scaling, ids, w, positions, lengths, fp32, states, tr, margins,
               data_ids, data_w, out_dir):
    print("  self-checks:")
    # files read back
    folder = os.path.join(out_dir, name)
    back, _ = golden_io.read_safetensors(os.path.join(folder, "model.safetensors"))
    check(set(back) == set(weights) and all(np.array_equal(back[k], weights[k].numpy()) for k in weights),
          "model.safetensors reads back")
    check(("lm_head.weight" in back) == (not cfg.tied), "lm_head.weight present iff untied")
    back, _ = golden_io.read_safetensors(os.path.join(folder, "adapter", "adapter_model.safetensors"))
    check(all(np.array_equal(back[k], lora[k].numpy()) for k in lora), "adapter_model.safetensors reads back")
    g = golden_io.read_golden(os.path.join(out_dir, name + ".golden.bin"))
    check(np.array_equal(g["fp32.logits"], fp32["logits"].numpy()), "golden file reads back")

    # the model against a naive float64 implementation
    naive = naive_forward_numpy(cfg, weights, lora, scaling, ids)
    got = fp32["logits"].numpy().astype(np.float64)
    err = np.abs(got - naive).max() / np.abs(naive).max()
    check(err < 1e-5, "torch fp32 logits vs naive float64 loops (rel max err %.2e)" % err)
    if cfg.rope_scaling is not None:
        check_llama3_bands(cfg)

    # padding: each sequence alone (unpadded) gives the same logits on its real tokens
    worst = 0.0
    for b, n in enumerate(lengths.tolist()):
        alone, _ = M.forward(cfg, weights, ids[b:b + 1, :n], positions[b:b + 1, :n], lora, scaling)
        worst = max(worst, float((alone[0] - fp32["logits"][b, :n]).abs().max()))
    check(worst < 1e-5, "right padding does not change real tokens (max diff %.1e)" % worst)
    pad_rows = fp32["dembed"][1, int(lengths[1]) - 1:]
    check(float(pad_rows.abs().max()) == 0.0, "d loss/d embedding is exactly 0 at the last real token and at pads")
    check(all(float(v.abs().max()) > 0 for v in fp32["grads"].values()), "every LoRA gradient is non-zero")

    # gradient accumulation: the step gradient == gradient of both micro-batches in one batch
    s = 0
    params = {k: v.detach().clone().requires_grad_(True) for k, v in lora.items()}
    cat_ids = data_ids[s].reshape(-1, data_ids.shape[-1])
    cat_w = data_w[s].reshape(-1, data_w.shape[-1])
    logits, _ = M.forward(cfg, weights, cat_ids, positions_for(cat_ids), params, scaling)
    ls, ws = M.weighted_loss_sum(logits, cat_ids, cat_w)
    (ls / ws).backward()
    big = torch.sqrt(sum((p.grad.double() ** 2).sum() for p in params.values()))
    check(abs(float(big) - tr["grad_norms"][0]) < 1e-5 * tr["grad_norms"][0],
          "accumulated grad norm == one-batch grad norm (%.6f vs %.6f)" % (tr["grad_norms"][0], float(big)))
    check(abs(float(ls / ws) - tr["losses"][0]) < 1e-6 * tr["losses"][0], "accumulated loss == one-batch loss")
    clipped = sum(c < 1.0 for c in tr["clip_coefs"])
    check(0 < clipped < TRAIN["steps"], "clipping triggers in some steps, not all (%d of %d)" % (clipped, TRAIN["steps"]))
    check(tr["lrs"][0] == 0.0 and abs(max(tr["lrs"]) - TRAIN["lr"]) < 1e-12, "schedule: lr 0 at step 0, peak at step 3")

    # NF4
    dmap_ok = np.array_equal(bnb_dynamic_map_torch(), nf4.DYNAMIC_MAP)
    check(dmap_ok, "numpy dynamic map == bitsandbytes' create_dynamic_map (torch)")
    worst_err, min_gap, mismatches = 0.0, 1.0, []
    for wname, st in states.items():
        wt = weights[wname].numpy()
        same = check_bnb_default_backend(wt, st)
        if not all(same):
            mismatches.append("%s vs bnb default backend %s" % (wname, same))
        divided = nf4.quantize_nf4(wt, divide=True)
        if not (np.array_equal(divided["weight"], st["weight"]) and np.array_equal(divided["absmax"], st["absmax"])):
            mismatches.append("%s: x/absmax and x*(1/absmax) give different codes" % wname)
        x = wt.reshape(-1)
        block_absmax = st["absmax_fp32"][np.arange(x.size) // st["blocksize"]]
        worst_err = max(worst_err, float((np.abs(nf4.dequantize_nf4(st).reshape(-1) - x) / block_absmax).max()))
        min_gap = min(min_gap, nf4.boundary_distance(x, nf4.NF4_CODE, st["blocksize"]))
    check(not mismatches, "NF4 codes and qabsmax == bitsandbytes default backend (torch transcription; offset "
          "within 1 ulp), and identical with x/absmax or x*(1/absmax), for all %d weights %s" % (len(states), mismatches))
    check(worst_err < 0.17, "NF4 dequant error <= 0.17 * block absmax (worst %.3f)" % worst_err)
    print("      (smallest distance of a normalised weight to an NF4 rounding boundary: %.2e)" % min_gap)
    check(min(margins) > 0.05, "greedy generation: smallest top-2 logit gap %.3f > 0.05" % min(margins))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=os.path.join(REPO, "tests", "data", "golden"))
    parser.add_argument("--verify", action="store_true",
                        help="regenerate into a temp dir and compare with the files in --out")
    args = parser.parse_args()

    print("generic self-checks:")
    gradcheck_tiny()
    check_adamw_formula()

    if args.verify:
        with tempfile.TemporaryDirectory() as tmp:
            run(tmp)
            bad = []
            for root, _, files in os.walk(tmp):
                for f in files:
                    if f == "report.json":
                        continue
                    new = os.path.join(root, f)
                    old = os.path.join(args.out, os.path.relpath(new, tmp))
                    if not os.path.exists(old) or not filecmp.cmp(new, old, shallow=False):
                        bad.append(os.path.relpath(new, tmp))
            if bad:
                print("DIFFERENT from the committed files: %s" % bad)
                sys.exit(1)
            print("all regenerated files are byte-identical to %s" % args.out)
        return
    run(args.out)


def run(out_dir):
    os.makedirs(out_dir, exist_ok=True)
    report = {}
    for name, spec in MODELS.items():
        make_model(name, copy.deepcopy(spec), out_dir, report)
    with open(os.path.join(out_dir, "report.json"), "w") as f:
        json.dump(report, f, indent=1)
        f.write("\n")
    print("wrote %s" % out_dir)


if __name__ == "__main__":
    main()
