"""Golden data for the PEFT families beside LoRA (issue 17): IA3, BitFit and DoRA (and, as they
come, prompt tuning), each against PEFT itself.

Run with the pinned environment (these exact versions; the script refuses others):
    /work/venv/bin/python tests/reference/peft_types_golden.py           # rewrite tests/data/peft_types/
    /work/venv/bin/python tests/reference/peft_types_golden.py --verify  # regenerate in a temp dir, fail
                                                                         # unless every file is identical
    /work/venv/bin/python tests/reference/peft_types_golden.py --check-vktune
        loads every adapter vktune wrote (tests/data/peft_types/vktune/<case>/adapter, written by
        `VKT_WRITE_PEFT_TYPES=1 build/vktune_tests -tc='peft types: 20 AdamW*'`) with
        PeftModel.from_pretrained, compares its logits with the ones vktune computed
        (vktune/<case>/logits.safetensors) and writes tests/data/peft_types/peft_load_check.json.

Base models: tests/data/hf/llama3 and tests/data/hf/qwen2 (q/k/v biases), written by hf_golden.py. Cases:
    ia3_llama   IA3Config() defaults on llama3: k_proj, v_proj scaled on their output, down_proj
                (feedforward) on its input
    ia3_qwen2   the same on qwen2: q_proj (output and bias scaled), v_proj, down_proj
    dora_llama  LoraConfig(use_dora=True) on llama3: r=4, alpha 8, every linear module, no dropout; A and B
                moved by 0.05·N(0, 1), each magnitude (initialised by PEFT to ‖W‖ per output row) scaled
                by 1 + 0.1·N(0, 1); its magnitude gradients are saved as "...lora_magnitude_vector"
    bitfit_qwen2  BitFit on qwen2: only the q/k/v biases train (PEFT has no BitFit: plain transformers
                with every other parameter frozen; the "adapter" is vktune's layout, adapter_config.json
                {"peft_type": "BITFIT"} and the biases under the model's names, loaded with
                load_state_dict(strict=False))
Every IA3 vector is moved from its ones to 1 + 0.3·N(0, 1), every BitFit bias by 0.05·N(0, 1) (fixed
seeds), so that the adapter matters and every gradient differs from the base model's. Per case, tests/data/peft_types/<case>/adapter/
(save_pretrained) and <case>.golden.bin:
    batch.*                      hf_golden.py's batch (two sequences, 13 and 9 tokens, right padding)
    fp32.logits / loss / dembed  PeftModel forward, transformers' loss, d loss / d embedding output
    fp32.grad.<saved name>       every trainable gradient, under adapter_model.safetensors' names
    nf4.*                        the same over the NF4 (+ double quant) round trip of every linear weight
    train.lr / loss / grad_norm  20 steps of torch.optim.AdamW (constant lr 2e-3, weight decay 0.01, none
                                 on biases as transformers' Trainer) with clip_grad_norm_(1.0) on the same batch
"""
import json
import os
import sys

import numpy as np
import safetensors.torch
import torch

import golden_io
import hf_golden
import peft_extras_golden

PINNED = hf_golden.PINNED
import peft  # noqa: E402
import transformers  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "data")
OUT = os.path.join(DATA, "peft_types")
# Bumped (here and as model::adapter_format_version) whenever the adapter files vktune writes change.
ADAPTER_FORMAT_VERSION = 1
TRAIN = peft_extras_golden.TRAIN  # 20 AdamW steps, as peft_extras_golden.py
LOGITS_BOUND = 1e-4  # the model_hf bound: PEFT's logits of vktune's adapter vs vktune's own

CASES = {
    "ia3_llama": ("llama3", 1000, "ia3"),
    "ia3_qwen2": ("qwen2", 1300, "ia3"),
    "bitfit_qwen2": ("qwen2", 1300, "bitfit"),
    "dora_llama": ("llama3", 1700, "dora"),
}


def load_base(family, state=None):
    model = transformers.AutoModelForCausalLM.from_pretrained(os.path.join(DATA, "hf", family),
                                                              attn_implementation="eager")
    if state is not None:
        model.load_state_dict(state, strict=False)
    return model.float().eval()


def saved_name(name):
    """named_parameters' name -> the name in adapter_model.safetensors."""
    name = name.replace(".ia3_l.default", ".ia3_l").replace(".default.", ".")
    return name.replace(".lora_magnitude_vector.weight", ".lora_magnitude_vector")  # PEFT saves DoRA's m so


def peft_config(kind):
    if kind == "ia3":
        return peft.IA3Config(task_type="CAUSAL_LM")
    if kind == "dora":  # every linear module, r=4, alpha 8, no dropout (vktune's DoRA has none yet)
        return peft.LoraConfig(task_type="CAUSAL_LM", r=4, lora_alpha=8, lora_dropout=0.0, use_dora=True,
                               target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                               "down_proj"])
    raise ValueError(kind)


def bitfit_model(family, adapter_dir=None, state=None):
    """The base with only its linear biases trainable; with adapter_dir, those biases loaded from it."""
    model = load_base(family, state)
    for name, p in model.named_parameters():
        p.requires_grad_(name.endswith("_proj.bias"))
    if adapter_dir is not None:
        model.load_state_dict(safetensors.torch.load_file(os.path.join(adapter_dir, "adapter_model.safetensors")),
                              strict=False)
    return model


def save_bitfit(model, family, adapter_dir):
    os.makedirs(adapter_dir, exist_ok=True)
    biases = {name: p.detach().contiguous() for name, p in model.named_parameters() if p.requires_grad}
    safetensors.torch.save_file(biases, os.path.join(adapter_dir, "adapter_model.safetensors"), {"format": "pt"})
    with open(os.path.join(adapter_dir, "adapter_config.json"), "w") as f:
        json.dump({"peft_type": "BITFIT", "base_model_name_or_path": "tests/data/hf/" + family}, f, indent=2)
        f.write("\n")


def load_adapted(family, adapter_dir, kind, state=None, trainable=False):
    if kind == "bitfit":
        return bitfit_model(family, adapter_dir, state)
    return peft.PeftModel.from_pretrained(load_base(family, state), adapter_dir, is_trainable=trainable)


def build_case(case):
    family, seed, kind = CASES[case]
    if kind == "bitfit":
        model = bitfit_model(family)
        with torch.no_grad():
            g = torch.Generator().manual_seed(seed + 6)
            for name, p in model.named_parameters():
                if p.requires_grad:
                    p.add_(0.05 * torch.randn(p.shape, generator=g))
        return model
    torch.manual_seed(seed + 3)  # LoRA's A (DoRA) draws from the global generator
    model = peft.get_peft_model(load_base(family), peft_config(kind))
    model.peft_config["default"].base_model_name_or_path = "tests/data/hf/" + family  # not this machine's path
    with torch.no_grad():  # IA3 starts at ones (the identity): move the vectors so that they matter
        g = torch.Generator().manual_seed(seed + 5)
        for name, p in model.named_parameters():
            if p.requires_grad and kind == "dora":  # B off zero, m off ‖W‖ (it stays positive)
                p.add_(0.05 * torch.randn(p.shape, generator=g)) if "magnitude" not in name else \
                    p.mul_(1 + 0.1 * torch.randn(p.shape, generator=g))
            elif p.requires_grad:
                p.add_(0.3 * torch.randn(p.shape, generator=g))
    return model


def forward_backward(model, ids, mask):
    """hf_golden's pass (logits, loss, d loss / d inputs_embeds) over the trainable parameters, named
    as adapter_model.safetensors names them."""
    result = hf_golden.forward_backward(model, ids, mask)
    result["grads"] = {saved_name(name): g for name, g in result["grads"].items()}
    assert result["grads"] and all(float(g.abs().max()) > 0 for g in result["grads"].values()), "a gradient is zero"
    return result


def make_case(case, out_dir):
    family, seed, kind = CASES[case]
    ids, mask = hf_golden.golden_batch(128, seed)
    model = build_case(case)
    folder = os.path.join(out_dir, case)
    adapter_dir = os.path.join(folder, "adapter")
    if kind == "bitfit":
        save_bitfit(model, family, adapter_dir)
    else:
        model.save_pretrained(adapter_dir)
        os.remove(os.path.join(adapter_dir, "README.md"))  # PEFT's model card: nothing a test reads
    rows = [("meta.json", np.frombuffer(json.dumps({"case": case, "base": "tests/data/hf/" + family, "kind": kind,
                                                    "train": TRAIN, "versions": PINNED},
                                                   sort_keys=True).encode(), dtype=np.uint8))]

    def put(key, value, dtype=np.float32):
        value = value.detach().numpy() if torch.is_tensor(value) else np.asarray(value)
        rows.append((key, value.astype(dtype)))

    def put_result(prefix, result):  # logits, loss, dembed, then every gradient by name
        named = [(key, result[key]) for key in ("logits", "loss", "dembed")]
        for key, value in named + [("grad." + n, result["grads"][n]) for n in sorted(result["grads"])]:
            put(prefix + "." + key, value)

    put("batch.ids", ids, np.int32)
    put("batch.weights", mask, np.float32)
    put("batch.positions", torch.arange(hf_golden.SEQ).expand(2, hf_golden.SEQ), np.int32)
    put("batch.lengths", hf_golden.LENGTHS, np.int32)
    result = forward_backward(model, ids, mask)
    put_result("fp32", result)
    # PEFT's own round trip gives the same logits (the saved adapter is complete).
    reloaded = load_adapted(family, adapter_dir, kind)
    with torch.no_grad():
        again = reloaded(input_ids=ids, attention_mask=mask).logits
    assert torch.allclose(again, result["logits"], atol=1e-6), case + ": PEFT's reload differs"
    # The same adapter over the NF4 round trip of the base's linear weights (QLoRA-style base).
    quantized = load_adapted(family, adapter_dir, kind, hf_golden.nf4_round_trip(load_base(family)), trainable=True)
    put_result("nf4", forward_backward(quantized, ids, mask))
    losses = peft_extras_golden.put_training(put, model, ids, mask)
    peft_extras_golden.finish_case(out_dir, case, rows, result, losses)


def check_vktune():
    """PeftModel.from_pretrained on each adapter vktune wrote gives vktune's logits."""
    report = peft_extras_golden.new_load_report(ADAPTER_FORMAT_VERSION, LOGITS_BOUND)
    for case, family, kind, adapter, ids, mask, ours in peft_extras_golden.vktune_outputs(OUT, CASES):
        model = load_adapted(family, adapter, kind)
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=mask).logits
        real = mask.bool()
        error = float((logits[real] - ours.reshape(logits.shape)[real]).abs().max())
        with torch.no_grad():  # the adapter matters (the check would pass without it otherwise)
            base_logits = load_base(family)(input_ids=ids, attention_mask=mask).logits
        distance = float((logits[real] - base_logits[real]).abs().max())
        report["cases"][case] = {"logits_max_abs": error, "distance_from_base": distance,
                                 "passed": error <= LOGITS_BOUND and distance > 100 * LOGITS_BOUND}
        print("%-10s PEFT logits of vktune's adapter vs vktune's: max-abs %.3g (base model differs by %.3g)" %
              (case, error, distance))
    peft_extras_golden.finish_load_check(report, OUT)


def run(out_dir):
    peft_extras_golden.run_cases(make_case, CASES, out_dir)


def main():
    peft_extras_golden.script_main(run, check_vktune, OUT, "tests/data/peft_types")


if __name__ == "__main__":
    main()
