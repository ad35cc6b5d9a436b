"""Golden data for Gemma 2 and Gemma 3 text models, from transformers itself (not our model.py).

Pinned: torch 2.15.0, transformers 5.23.0, peft 0.21.2, safetensors 0.8.0 (/work/venv/bin/python).
Run from the repository root:  /work/venv/bin/python tests/reference/hf_gemma_golden.py

Writes (small, committed):
  tests/data/golden/hf_gemma_ops.golden.bin: Gemma's pieces through transformers' own modules and
    functions, forward and autograd gradients: Gemma3RMSNorm ((1 + w), weight gradient too), the
    GeGLU MLP activation (ACT2FN["gelu_pytorch_tanh"]), eager_attention_forward with the
    library's sliding-window causal mask, an explicit scaling and Gemma 2's logit soft-capping,
    and the final-logit soft-capping before cross-entropy as Gemma2ForCausalLM computes it.
    tests/test_model_golden_gemma.cpp runs our kernels on the same inputs.
  tests/data/hf/gemma3/, tests/data/hf/gemma2/: tiny random Gemma3ForCausalLM / Gemma2ForCausalLM
    (config.json + model.safetensors, fp32; 2 layers: one sliding, one global; GQA; a sliding
    window shorter than the sequence; every feature on), their PEFT adapters (tests/data/hf/<model>_adapter/)
    and tests/data/golden/hf_<model>.golden.bin
    with their logits (adapter applied), loss, PEFT LoRA gradients (r=4 on the seven linear modules, as all-linear, nonzero B) and 20
    greedy tokens. Full finetuning of the same model (no adapter) on the same batch: full.loss,
    full.grad.<name> for every parameter of named_parameters() (the tied embedding once, with both of
    its uses), full.decay_names (the parameters Trainer.get_decay_parameter_names decays; JSON, uint8)
    and full.adamw.* (3 AdamW steps with Trainer's two parameter groups and clipping: losses,
    pre-clip gradient norms, final norm weights and one linear weight).
  tests/data/hf/gemma3_bf16/ + tests/data/golden/hf_gemma3_bf16.golden.bin: a one-layer
    Gemma3ForCausalLM saved in bfloat16 with hidden 48, whose embedding normalizer sqrt(48) = 6.928
    is 6.9375 in bf16, and the output of its scaled embedding for embed.ids as transformers computes
    it in the config's dtype (embed.out_bf16: bf16 values as fp32) and in fp32 (embed.out_fp32).
The adapters' target_modules order follows Python's string hashing: restore adapter_config.json
(git checkout) after a rerun unless the adapters themselves changed.
"""
import json
import os
import sys

import numpy as np
import torch

import transformers
import peft

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from golden_io import write_golden  # noqa: E402

PINNED = {"torch": "2.15.0", "transformers": "5.23.0", "peft": "0.21.2"}
for module, version in ((torch, PINNED["torch"]), (transformers, PINNED["transformers"]), (peft, PINNED["peft"])):
    assert module.__version__.split("+")[0] == version, f"{module.__name__} {module.__version__}, pinned {version}"

from transformers import AutoModelForCausalLM, Gemma2Config, Gemma3TextConfig  # noqa: E402
from transformers.activations import ACT2FN  # noqa: E402
from transformers.masking_utils import and_masks, causal_mask_function, sliding_window_overlay  # noqa: E402
from transformers.models.gemma2.modeling_gemma2 import eager_attention_forward  # noqa: E402
from transformers.models.gemma3.modeling_gemma3 import Gemma3RMSNorm  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GOLDEN = os.path.join(ROOT, "tests/data/golden")
HF = os.path.join(ROOT, "tests/data/hf")

torch.use_deterministic_algorithms(True)


def f32(t):
    return t.detach().to(torch.float32).contiguous().numpy()


def ops_golden():
    g = torch.Generator().manual_seed(1234)
    out = []

    # Gemma3RMSNorm: x * rstd * (1 + w) in fp32; loss = sum(y * dy).
    rows, cols = 7, 48
    norm = Gemma3RMSNorm(cols, eps=1e-6)
    with torch.no_grad():
        norm.weight.copy_(torch.randn(cols, generator=g) * 0.3)
    x = torch.randn(rows, cols, generator=g).requires_grad_()
    dy = torch.randn(rows, cols, generator=g)
    y = norm(x)
    (y * dy).sum().backward()
    out += [("rmsnorm.x", f32(x)), ("rmsnorm.weight", f32(norm.weight)), ("rmsnorm.eps", np.array([1e-6], "<f8")),
            ("rmsnorm.dy", f32(dy)), ("rmsnorm.y", f32(y)), ("rmsnorm.dx", f32(x.grad)),
            ("rmsnorm.d_weight", f32(norm.weight.grad))]

    # GeGLU: gelu_pytorch_tanh(gate) * up.
    n = 301
    gate = (torch.randn(n, generator=g) * 3).requires_grad_()
    up = torch.randn(n, generator=g).requires_grad_()
    dh = torch.randn(n, generator=g)
    h = ACT2FN["gelu_pytorch_tanh"](gate) * up
    (h * dh).sum().backward()
    out += [("geglu.gate", f32(gate)), ("geglu.up", f32(up)), ("geglu.dh", f32(dh)), ("geglu.h", f32(h)),
            ("geglu.d_gate", f32(gate.grad)), ("geglu.d_up", f32(up.grad))]

    # Attention: transformers' eager_attention_forward (Gemma 2) with the library's sliding-window
    # causal mask, scaling query_pre_attn_scalar**-0.5 and logit soft-capping, GQA 4/2.
    batch, seq, q_heads, kv_heads, head_dim, window = 2, 13, 4, 2, 16, 5
    for name, softcap in (("attention", 3.0), ("attention_nocap", None)):
        q = torch.randn(batch, q_heads, seq, head_dim, generator=g).requires_grad_()
        k = torch.randn(batch, kv_heads, seq, head_dim, generator=g).requires_grad_()
        v = torch.randn(batch, kv_heads, seq, head_dim, generator=g).requires_grad_()
        do = torch.randn(batch, seq, q_heads, head_dim, generator=g)
        mask_fn = and_masks(causal_mask_function, sliding_window_overlay(window))
        index = lambda value: torch.tensor(value)
        allowed = torch.tensor([[bool(mask_fn(index(0), index(0), index(i), index(j))) for j in range(seq)]
                                for i in range(seq)])
        mask = torch.zeros(batch, 1, seq, seq).masked_fill(~allowed, torch.finfo(torch.float32).min)
        module = torch.nn.Module()
        module.num_key_value_groups = q_heads // kv_heads
        module.training = False
        scaling = 24.0 ** -0.5  # query_pre_attn_scalar 24, not head_dim
        o, _ = eager_attention_forward(module, q, k, v, mask, dropout=0.0, scaling=scaling, softcap=softcap)
        (o * do).sum().backward()  # o: (batch, seq, q_heads, head_dim), our layout
        to_rows = lambda t: f32(t.transpose(1, 2))  # (batch, heads, seq, d) -> (batch*seq, heads*d)
        out += [(f"{name}.q", to_rows(q)), (f"{name}.k", to_rows(k)), (f"{name}.v", to_rows(v)),
                (f"{name}.d_o", f32(do)), (f"{name}.o", f32(o)), (f"{name}.dq", to_rows(q.grad)),
                (f"{name}.dk", to_rows(k.grad)), (f"{name}.dv", to_rows(v.grad)),
                (f"{name}.shape", np.array([batch, seq, q_heads, kv_heads, head_dim, window], "<i4")),
                (f"{name}.scale_softcap", np.array([scaling, softcap or 0.0], "<f8"))]

    # Final logit soft-capping as Gemma2ForCausalLM: logits / c, tanh, * c, then mean cross-entropy.
    rows, vocab, cap = 6, 97, 30.0
    logits = (torch.randn(rows, vocab, generator=g) * 40).requires_grad_()
    targets = torch.randint(0, vocab, (rows,), generator=g)
    capped = torch.tanh(logits / cap) * cap
    loss = torch.nn.functional.cross_entropy(capped, targets)
    loss.backward()
    out += [("softcap_ce.logits", f32(logits)), ("softcap_ce.targets", targets.to(torch.int32).numpy()),
            ("softcap_ce.cap", np.array([cap], "<f8")), ("softcap_ce.loss", np.array([loss.item()], "<f8")),
            ("softcap_ce.dlogits", f32(logits.grad))]
    write_golden(os.path.join(GOLDEN, "hf_gemma_ops.golden.bin"), out)


def tiny_config(kind):
    common = dict(vocab_size=256, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, head_dim=16, max_position_embeddings=256, rms_norm_eps=1e-6,
                  query_pre_attn_scalar=24, sliding_window=5, hidden_activation="gelu_pytorch_tanh",
                  tie_word_embeddings=True, pad_token_id=0, bos_token_id=1, eos_token_id=2,
                  layer_types=["sliding_attention", "full_attention"], attention_bias=False)
    if kind == "gemma3":
        return Gemma3TextConfig(**common, rope_parameters={
            "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
            "full_attention": {"rope_type": "default", "rope_theta": 1000000.0}})
    return Gemma2Config(**common, rope_theta=10000.0, attn_logit_softcapping=50.0, final_logit_softcapping=30.0)


def model_golden(kind):
    torch.manual_seed(7)
    config = tiny_config(kind)
    config._attn_implementation = "eager"
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    with torch.no_grad():  # norms' weights away from their zero init, so (1 + w) matters
        for name, parameter in model.named_parameters():
            if "norm" in name:
                parameter.copy_(torch.randn_like(parameter) * 0.2)
    folder = os.path.join(HF, kind)
    model.save_pretrained(folder, safe_serialization=True)

    g = torch.Generator().manual_seed(11)
    batch, seq = 2, 12  # seq 12 > sliding_window 5: the window masks keys
    input_ids = torch.randint(3, 256, (batch, seq), generator=g)
    labels = input_ids.clone()
    labels[1, :3] = -100
    model.eval()
    out = [("input_ids", input_ids.to(torch.int32).numpy()), ("labels", labels.to(torch.int32).numpy())]

    modules = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]  # = all-linear
    lora = peft.LoraConfig(r=4, lora_alpha=8, target_modules=modules, lora_dropout=0.0, init_lora_weights=True)
    peft_model = peft.get_peft_model(model, lora)
    with torch.no_grad():  # nonzero B, so that gradients reach A too
        for name, parameter in peft_model.named_parameters():
            if "lora_B" in name:
                parameter.copy_(torch.randn_like(parameter) * 0.05)
    peft_model.save_pretrained(os.path.join(HF, kind + "_adapter"))
    with torch.no_grad():  # logits and greedy tokens of the base model with the adapter
        out.append(("logits", f32(peft_model(input_ids=input_ids).logits)))
    loss = peft_model(input_ids=input_ids, labels=labels).loss
    loss.backward()
    out.append(("loss", np.array([loss.item()], "<f8")))
    for name, parameter in peft_model.named_parameters():
        if "lora_" in name:
            short = name.replace("base_model.model.", "").replace(".default", "")
            out += [(short, f32(parameter)), (short + ".grad", f32(parameter.grad))]

    prompt = input_ids[:1, :4]
    with torch.no_grad():
        generated = model.generate(prompt, max_new_tokens=20, do_sample=False, min_new_tokens=20)
    out.append(("greedy_prompt", prompt.to(torch.int32).numpy()))
    out.append(("greedy_tokens", generated[0, 4:].to(torch.int32).numpy()))
    out += full_golden(folder, input_ids, labels)
    write_golden(os.path.join(GOLDEN, f"hf_{kind}.golden.bin"), out)


def full_golden(folder, input_ids, labels):
    """Full finetuning: the saved model's loss and the gradient of every parameter it trains."""
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, attn_implementation="eager").eval()
    loss = model(input_ids=input_ids, labels=labels).loss
    loss.backward()
    out = [("full.loss", np.array([loss.item()], "<f8"))]
    for name, parameter in model.named_parameters():  # a tied lm_head is not listed again
        assert float(parameter.grad.abs().max()) > 0, name + " has a zero gradient"
        out.append(("full.grad." + name, f32(parameter.grad)))
    decayed = sorted(transformers.Trainer.get_decay_parameter_names(None, model))
    out.append(("full.decay_names", np.frombuffer(json.dumps(decayed).encode(), dtype=np.uint8)))
    return out + adamw_golden(folder, input_ids, labels, set(decayed))


ADAMW_STEPS, ADAMW_LR, ADAMW_DECAY, ADAMW_CLIP = 3, 1e-2, 0.1, 1.0


def adamw_golden(folder, input_ids, labels, decayed):
    """A few full-finetuning steps as Trainer runs them: AdamW (betas 0.9/0.999, eps 1e-8) with weight
    decay on its decay list only, the global gradient norm clipped to 1, the same batch every step.
    Losses and pre-clip norms per step, and the final values of every norm weight (undecayed) and of
    one decayed linear weight; the whole model would be too large to commit."""
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, attn_implementation="eager").eval()
    named = list(model.named_parameters())
    optimizer = torch.optim.AdamW([{"params": [p for n, p in named if n in decayed], "weight_decay": ADAMW_DECAY},
                                   {"params": [p for n, p in named if n not in decayed], "weight_decay": 0.0}],
                                  lr=ADAMW_LR, betas=(0.9, 0.999), eps=1e-8)
    losses, norms = [], []
    for _ in range(ADAMW_STEPS):
        optimizer.zero_grad(set_to_none=True)
        loss = model(input_ids=input_ids, labels=labels).loss
        loss.backward()
        norms.append(float(torch.nn.utils.clip_grad_norm_(model.parameters(), ADAMW_CLIP)))
        losses.append(loss.item())
        optimizer.step()
    out = [("full.adamw.loss", np.array(losses, "<f8")), ("full.adamw.grad_norm", np.array(norms, "<f8")),
           ("full.adamw.settings", np.array([ADAMW_LR, ADAMW_DECAY, ADAMW_CLIP], "<f8"))]
    for name, parameter in named:
        if "norm" in name or name == "model.layers.0.self_attn.k_proj.weight":
            out.append(("full.adamw.final." + name, f32(parameter)))
    return out


def bf16_embedding_golden():
    """Gemma's embedding normalizer, rounded to the model's dtype as transformers does."""
    torch.manual_seed(5)
    config = Gemma3TextConfig(vocab_size=64, hidden_size=48, intermediate_size=32, num_hidden_layers=1,
                              num_attention_heads=2, num_key_value_heads=1, head_dim=16, max_position_embeddings=64,
                              rms_norm_eps=1e-6, query_pre_attn_scalar=16, sliding_window=4,
                              layer_types=["full_attention"], tie_word_embeddings=True, pad_token_id=0,
                              bos_token_id=1, eos_token_id=2, rope_parameters={
                                  "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
                                  "full_attention": {"rope_type": "default", "rope_theta": 1000000.0}})
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    with torch.no_grad():  # rows of order 1, so that a wrong normalizer moves most bf16 values
        model.model.embed_tokens.weight.normal_(0.0, 1.0)
    model = model.to(torch.bfloat16)
    folder = os.path.join(HF, "gemma3_bf16")
    model.save_pretrained(folder, safe_serialization=True)
    scale = torch.tensor(48 ** 0.5).to(torch.bfloat16).item()
    assert scale == 6.9375 and abs(48 ** 0.5 - scale) > 5e-3, scale
    ids = torch.arange(64).reshape(2, 32)
    with torch.no_grad():
        as_stored = AutoModelForCausalLM.from_pretrained(folder)  # dtype "auto": the config's bfloat16
        assert as_stored.model.embed_tokens.weight.dtype == torch.bfloat16
        out_bf16 = as_stored.model.embed_tokens(ids)
        as_fp32 = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
        out_fp32 = as_fp32.model.embed_tokens(ids)
    write_golden(os.path.join(GOLDEN, "hf_gemma3_bf16.golden.bin"),
                 [("embed.ids", ids.to(torch.int32).numpy()), ("embed.out_bf16", f32(out_bf16)),
                  ("embed.out_fp32", f32(out_fp32))])


if __name__ == "__main__":
    ops_golden()
    for kind in ("gemma3", "gemma2"):
        model_golden(kind)
    bf16_embedding_golden()
    print("wrote", GOLDEN, HF)
