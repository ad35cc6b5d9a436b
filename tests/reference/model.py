"""Llama / Qwen2 causal LM with PEFT LoRA, in plain torch, following Hugging Face semantics.

Mirrors transformers' modeling_llama.py / modeling_qwen2.py (eager attention) and PEFT's
lora.Linear, written as functions over a dict of weights named as in the HF checkpoint:

  h0      = embed_tokens[ids]                                                  (B, T, H)
  per layer i:
    x     = rms_norm(h, input_layernorm)
    q,k,v = x @ W^T (+ bias for qwen2 q/k/v) (+ LoRA)      q: (B, heads, T, D)  k, v: (B, kv_heads, T, D)
    q,k   = q*cos + rotate_half(q)*sin                      rotate_half(x) = cat(-x[D/2:], x[:D/2])
    k,v   = repeat_kv(k,v): kv head j serves q heads j*G .. j*G+G-1 (G = heads / kv_heads)
    a     = softmax(q k^T / sqrt(D) + causal mask) v        (softmax in fp32)
    h     = h + o_proj(a)
    x     = rms_norm(h, post_attention_layernorm)
    h     = h + down_proj(silu(gate_proj(x)) * up_proj(x))
  logits  = rms_norm(h, norm) @ lm_head^T   (lm_head = embed_tokens when tie_word_embeddings)
  rms_norm(x, w) = w * (x * rsqrt(mean(x^2) + eps))         (normalise in fp32, weight after)
  LoRA:   y = base(x) + (B(A(x))) * (lora_alpha / r)         A: (r, in)  B: (out, r)  dropout 0

Computation dtype follows the weights (fp32 for the golden data, fp64 for gradcheck).
"""
import math

import torch
import torch.nn.functional as F

LINEAR_NAMES = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")
TARGET_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


class Config:
    """The fields of an HF config.json that the forward pass needs."""

    def __init__(self, hf):
        self.hf = hf
        self.arch = hf["architectures"][0]
        self.hidden = hf["hidden_size"]
        self.intermediate = hf["intermediate_size"]
        self.layers = hf["num_hidden_layers"]
        self.heads = hf["num_attention_heads"]
        self.kv_heads = hf.get("num_key_value_heads", self.heads)
        self.head_dim = hf.get("head_dim") or self.hidden // self.heads
        self.eps = hf["rms_norm_eps"]
        self.theta = hf["rope_theta"]
        self.vocab = hf["vocab_size"]
        self.tied = hf.get("tie_word_embeddings", False)
        self.rope_scaling = hf.get("rope_scaling")
        # Qwen2 always has q/k/v biases (no o_proj bias); Llama has them only with attention_bias.
        self.qkv_bias = self.arch == "Qwen2ForCausalLM" or hf.get("attention_bias", False)
        self.o_bias = self.arch != "Qwen2ForCausalLM" and hf.get("attention_bias", False)

    def linear_shapes(self):
        """{module name: (out, in)} for one layer."""
        H, I, D = self.hidden, self.intermediate, self.head_dim
        return {"self_attn.q_proj": (self.heads * D, H), "self_attn.k_proj": (self.kv_heads * D, H),
                "self_attn.v_proj": (self.kv_heads * D, H), "self_attn.o_proj": (H, self.heads * D),
                "mlp.gate_proj": (I, H), "mlp.up_proj": (I, H), "mlp.down_proj": (H, I)}

    def has_bias(self, module):
        if module in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"):
            return self.qkv_bias
        return module == "self_attn.o_proj" and self.o_bias


def rope_inv_freq(cfg):
    """(D/2,) float32 inverse frequencies, HF _compute_default_rope_parameters and, for
    rope_scaling.rope_type == "llama3", _compute_llama3_parameters (all in float32)."""
    D = cfg.head_dim
    inv_freq = 1.0 / (cfg.theta ** (torch.arange(0, D, 2, dtype=torch.int64).float() / D))
    scaling = cfg.rope_scaling
    if scaling is None:
        return inv_freq
    rope_type = scaling.get("rope_type", scaling.get("type"))
    assert rope_type == "llama3", rope_type
    factor = scaling["factor"]
    low_freq_factor = scaling["low_freq_factor"]
    high_freq_factor = scaling["high_freq_factor"]
    old_context_len = scaling["original_max_position_embeddings"]
    low_freq_wavelen = old_context_len / low_freq_factor
    high_freq_wavelen = old_context_len / high_freq_factor
    wavelen = 2 * math.pi / inv_freq
    inv_freq_llama = torch.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
    smooth_factor = (old_context_len / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
    smoothed_inv_freq = (1 - smooth_factor) * inv_freq_llama / factor + smooth_factor * inv_freq_llama
    is_medium_freq = ~(wavelen < high_freq_wavelen) * ~(wavelen > low_freq_wavelen)
    return torch.where(is_medium_freq, smoothed_inv_freq, inv_freq_llama)


def rope_cos_sin(cfg, positions, dtype):
    """positions: (B, T) int64 -> cos, sin: (B, T, D), computed in fp32 as HF does, then cast."""
    inv_freq = rope_inv_freq(cfg)
    inv_freq_expanded = inv_freq[None, :, None].float().expand(positions.shape[0], -1, 1)
    freqs = (inv_freq_expanded @ positions[:, None, :].float()).transpose(1, 2)
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos().to(dtype), emb.sin().to(dtype)


def rotate_half(x):
    x1 = x[..., : x.shape[-1] // 2]
    x2 = x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


def rms_norm(x, weight, eps):
    # HF normalises in fp32 (at least), multiplies by the weight after casting back.
    compute = torch.promote_types(x.dtype, torch.float32)
    y = x.to(compute)
    variance = y.pow(2).mean(-1, keepdim=True)
    y = y * torch.rsqrt(variance + eps)
    return weight * y.to(x.dtype)


def repeat_kv(x, n_rep):
    """(B, kv_heads, T, D) -> (B, kv_heads * n_rep, T, D): kv head j is repeated for q heads j*n_rep.."""
    B, kv, T, D = x.shape
    if n_rep == 1:
        return x
    return x[:, :, None, :, :].expand(B, kv, n_rep, T, D).reshape(B, kv * n_rep, T, D)


def linear(x, weights, lora, prefix, lora_scaling):
    """prefix: "model.layers.{i}.self_attn.q_proj" etc. lora: {peft name: tensor} or None."""
    y = x @ weights[prefix + ".weight"].t()
    bias = weights.get(prefix + ".bias")
    if bias is not None:
        y = y + bias
    if lora is not None:
        a = lora.get("base_model.model." + prefix + ".lora_A.weight")
        if a is not None:
            b = lora["base_model.model." + prefix + ".lora_B.weight"]
            y = y + ((x @ a.t()) @ b.t()) * lora_scaling
    return y


def attention(cfg, q, k, v):
    """q: (B, heads, T, D), k, v: (B, kv_heads, T, D) (after RoPE) -> (B, T, heads*D), causal."""
    B, _, T, D = q.shape
    k = repeat_kv(k, cfg.heads // cfg.kv_heads)
    v = repeat_kv(v, cfg.heads // cfg.kv_heads)
    scores = (q @ k.transpose(2, 3)) * (D ** -0.5)
    mask = torch.full((T, T), torch.finfo(scores.dtype).min, dtype=scores.dtype).triu(1)
    scores = scores + mask
    probs = F.softmax(scores, dim=-1, dtype=torch.promote_types(scores.dtype, torch.float32)).to(q.dtype)
    out = probs @ v
    return out.transpose(1, 2).reshape(B, T, cfg.heads * D)


def forward(cfg, weights, ids, positions, lora=None, lora_scaling=0.0, embed_grad=False, inputs_embeds=None):
    """ids, positions: (B, T) int64 -> (logits (B, T, V), h0 (B, T, H) the embedding output).
    With embed_grad, h0 is a leaf that requires grad, so h0.grad is d loss / d embedding output.
    inputs_embeds: (B, T, H) used instead of embed_tokens[ids] (as HF's argument of that name)."""
    B, T = ids.shape
    D = cfg.head_dim
    h0 = weights["model.embed_tokens.weight"][ids] if inputs_embeds is None else inputs_embeds
    if embed_grad:
        h0 = h0.detach().requires_grad_(True)
    cos, sin = rope_cos_sin(cfg, positions, h0.dtype)
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    h = h0
    for i in range(cfg.layers):
        p = "model.layers.%d." % i
        x = rms_norm(h, weights[p + "input_layernorm.weight"], cfg.eps)
        q = linear(x, weights, lora, p + "self_attn.q_proj", lora_scaling).view(B, T, cfg.heads, D).transpose(1, 2)
        k = linear(x, weights, lora, p + "self_attn.k_proj", lora_scaling).view(B, T, cfg.kv_heads, D).transpose(1, 2)
        v = linear(x, weights, lora, p + "self_attn.v_proj", lora_scaling).view(B, T, cfg.kv_heads, D).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        h = h + linear(attention(cfg, q, k, v), weights, lora, p + "self_attn.o_proj", lora_scaling)
        x = rms_norm(h, weights[p + "post_attention_layernorm.weight"], cfg.eps)
        gate = linear(x, weights, lora, p + "mlp.gate_proj", lora_scaling)
        up = linear(x, weights, lora, p + "mlp.up_proj", lora_scaling)
        h = h + linear(F.silu(gate) * up, weights, lora, p + "mlp.down_proj", lora_scaling)
    x = rms_norm(h, weights["model.norm.weight"], cfg.eps)
    lm_head = weights["model.embed_tokens.weight"] if cfg.tied else weights["lm_head.weight"]
    return x @ lm_head.t(), h0


def weighted_loss_sum(logits, ids, token_weights):
    """The golden loss convention. token_weights[b, t] weighs token t as a *target*: the logits at
    position t predict token t+1, so
      loss_sum   = sum_{b, t<T-1} w[b, t+1] * CE(logits[b, t], ids[b, t+1])
      weight_sum = sum_{b, t>=1}  w[b, t]
    and loss = loss_sum / weight_sum (over every micro-batch of an optimizer step).
    Returns (loss_sum, weight_sum) as 0-d tensors; CE in fp32 (or fp64)."""
    B, T, V = logits.shape
    compute = torch.promote_types(logits.dtype, torch.float32)
    ce = F.cross_entropy(logits[:, :-1].to(compute).reshape(-1, V), ids[:, 1:].reshape(-1),
                         reduction="none").view(B, T - 1)
    w = token_weights[:, 1:].to(compute)
    return (w * ce).sum(), w.sum()
