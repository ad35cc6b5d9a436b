"""Golden data for LongLoRA (--s2-attn, trainable embeddings and norms): tests/test_model_longlora.cpp.

LongLoRA's shifted sparse attention as its reference writes it (dvlab-research/LongLoRA,
llama_attn_replace.py, forward_noflashattn: group_size = q_len * 1/4; after RoPE and repeat_kv, the
last half of the heads rolled by -group_size//2 along the sequence; causal attention within each
group; the output of those heads rolled back by group_size//2) replaces transformers' eager attention
while the model trains; in eval mode the model attends in full. On tests/data/hf/llama3 (hf_golden.py:
4 heads on 2 kv heads, 2 layers) with hf_golden's LoRA (r=4, alpha=8, all-linear, random A and B):
    s2_lora   LoRA alone
    s2_plus   LongLoRA's "+": also modules_to_save [embed_tokens, input_layernorm,
              post_attention_layernorm, norm] (PEFT matches module-name suffixes; the copies are
              perturbed from the base so that they matter)
Per case tests/data/longlora/<case>/adapter/ (save_pretrained) and <case>.golden.bin:
    batch.*        two full rows of 16 tokens (no padding: LongLoRA trains on full-length chunks)
    fp32.logits    eval mode (full attention): what inference sees
    fp32.loss / dembed / grad.<saved name>   train mode (S2 attention): the training step
The adapter reloads with PeftModel.from_pretrained to the same logits (checked here).

Run: /work/venv/bin/python tests/reference/longlora_golden.py  (--verify regenerates in a temporary
folder and fails unless every file is identical)
"""
import json
import os
import sys

import numpy as np
import torch

import golden_io
import hf_golden
import peft_extras_golden

import peft  # noqa: E402
import transformers  # noqa: E402
from transformers.models.llama import modeling_llama  # noqa: E402

PINNED = hf_golden.PINNED
HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "data", "longlora")
FAMILY = "llama3"
SEQ = 16
GROUP_SIZE_RATIO = 1 / 4  # LongLoRA's group_size_ratio
CASES = {
    "s2_lora": (1300, {}),
    "s2_plus": (1400, dict(modules_to_save=["embed_tokens", "input_layernorm", "post_attention_layernorm", "norm"])),
}
eager_attention_forward = modeling_llama.eager_attention_forward


def s2_attention_forward(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
    """LongLoRA's forward_noflashattn from its shift on: query (b, heads, q_len, d) after RoPE."""
    if not module.training:
        return eager_attention_forward(module, query, key, value, attention_mask, scaling, dropout, **kwargs)
    bsz, num_heads, q_len, head_dim = query.shape
    group_size = int(q_len * GROUP_SIZE_RATIO)
    if q_len % group_size > 0:
        raise ValueError("q_len %d should be divisible by group size %d." % (q_len, group_size))
    num_group = q_len // group_size
    key_states = modeling_llama.repeat_kv(key, module.num_key_value_groups)
    value_states = modeling_llama.repeat_kv(value, module.num_key_value_groups)

    def shift(qkv):
        qkv = qkv.clone()  # LongLoRA assigns in place into its own tensors
        qkv[:, num_heads // 2:] = qkv[:, num_heads // 2:].roll(-group_size // 2, dims=2)
        return qkv.transpose(1, 2).reshape(bsz * num_group, group_size, num_heads, head_dim).transpose(1, 2)

    query_states, key_states, value_states = shift(query), shift(key_states), shift(value_states)
    attn_weights = torch.matmul(query_states, key_states.transpose(2, 3)) * scaling
    causal = torch.full((group_size, group_size), torch.finfo(attn_weights.dtype).min).triu(1)
    attn_weights = attn_weights + causal  # LongLoRA: attention_mask[:, :, :group_size, :group_size] (no padding)
    attn_weights = torch.nn.functional.softmax(attn_weights, dim=-1, dtype=torch.float32).to(query_states.dtype)
    attn_output = torch.matmul(attn_weights, value_states)
    attn_output = attn_output.transpose(1, 2).contiguous().reshape(bsz, q_len, num_heads, head_dim)
    attn_output = attn_output.clone()
    attn_output[:, :, num_heads // 2:] = attn_output[:, :, num_heads // 2:].roll(group_size // 2, dims=1)
    return attn_output, None


modeling_llama.eager_attention_forward = s2_attention_forward  # LlamaAttention looks it up per call


def batch(seed):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, 128, (2, SEQ), generator=g)
    ids[:, 0] = hf_golden.BOS_ID
    return ids, torch.ones(2, SEQ, dtype=torch.int64)


def build_case(case):
    seed, extra = CASES[case]
    torch.manual_seed(seed + 3)
    model = peft.get_peft_model(peft_extras_golden.load_base(FAMILY), peft.LoraConfig(**{**hf_golden.LORA, **extra}))
    model.peft_config["default"].base_model_name_or_path = "tests/data/hf/" + FAMILY  # not this machine's path
    with torch.no_grad():  # the saved modules start as the base's: move them so that they matter
        g = torch.Generator().manual_seed(seed + 4)
        for name, p in model.named_parameters():
            if p.requires_grad and "lora_" not in name:
                p.add_(0.05 * torch.randn(p.shape, generator=g))
    return model, extra


def make_case(case, out_dir):
    seed, _ = CASES[case]
    ids, mask = batch(seed)
    model, extra = build_case(case)
    folder = os.path.join(out_dir, case)
    model.save_pretrained(os.path.join(folder, "adapter"))
    os.remove(os.path.join(folder, "adapter", "README.md"))
    rows = [("meta.json", np.frombuffer(json.dumps({"case": case, "base": "tests/data/hf/" + FAMILY,
                                                    "lora": hf_golden.LORA, "extra": extra, "seq": SEQ,
                                                    "group_size_ratio": GROUP_SIZE_RATIO, "versions": PINNED},
                                                   sort_keys=True).encode(), dtype=np.uint8))]

    def put(key, value, dtype=np.float32):
        value = value.detach().numpy() if torch.is_tensor(value) else np.asarray(value)
        rows.append((key, value.astype(dtype)))
    put("batch.ids", ids, np.int32)
    put("batch.weights", mask, np.float32)
    put("batch.positions", torch.arange(SEQ).expand(2, SEQ), np.int32)
    put("batch.lengths", [SEQ, SEQ], np.int32)
    model.eval()
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask).logits
    model.train()  # S2 attention (dropout is 0 everywhere)
    result = peft_extras_golden.forward_backward(model, ids, mask)
    model.eval()
    with torch.no_grad():  # S2 changes the training loss: the check would pass without S2 otherwise
        full_loss = float(model(input_ids=ids, attention_mask=mask, labels=ids).loss)
    assert abs(full_loss - float(result["loss"])) > 1e-3, case + ": S2 attention does not change the loss"
    put("fp32.logits", logits)
    put("fp32.loss", result["loss"])
    put("fp32.dembed", result["dembed"])
    for name in sorted(result["grads"]):
        put("fp32.grad." + name, result["grads"][name])
    reloaded = peft.PeftModel.from_pretrained(peft_extras_golden.load_base(FAMILY), os.path.join(folder, "adapter"))
    with torch.no_grad():
        again = reloaded(input_ids=ids, attention_mask=mask).logits
    assert torch.allclose(again, logits, atol=1e-6), case + ": PEFT's reload differs"
    golden_io.write_golden(os.path.join(out_dir, case + ".golden.bin"), rows)
    print("%-8s %s S2 loss %.6f (full attention %.6f), %d trainable tensors" %
          (case, extra, float(result["loss"]), full_loss, len(result["grads"])))


def run(out_dir):
    peft_extras_golden.run_cases(make_case, CASES, out_dir)


def main():
    peft_extras_golden.script_main(run, lambda: sys.exit("longlora_golden.py has no --check-vktune"), OUT,
                                   "tests/data/longlora")


if __name__ == "__main__":
    main()
