"""Golden data for LoRA+ (--loraplus-lr-ratio): PEFT's create_loraplus_optimizer over 20 AdamW steps.

Run with the pinned environment (these exact versions; the script refuses others):
    /work/venv/bin/python tests/reference/loraplus_golden.py           # rewrite tests/data/loraplus/
    /work/venv/bin/python tests/reference/loraplus_golden.py --verify  # regenerate in a temp dir, fail
                                                                       # unless every file is identical

Each case starts from an adapter peft_extras_golden.py committed (tests/data/peft_extras/<case>/adapter,
loaded with PeftModel.from_pretrained(is_trainable=True)) on that script's golden batch:
    mts_untied   LoRA all-linear + modules_to_save [embed_tokens, lm_head] on tests/data/hf/llama3
    tokens_tied  LoRA all-linear + trainable_token_indices on tests/data/hf/smollm2 (tied)
and trains 20 steps with peft.optimizers.create_loraplus_optimizer(model, torch.optim.AdamW,
lr=LR, loraplus_lr_ratio=RATIO, loraplus_weight_decay=0.01), clip_grad_norm_(1.0) and HF's
linear schedule with 2 warmup steps (a LambdaLR: every group's lr follows the same multiplier).
PEFT's grouping (peft 0.21.2, peft/optimizers/loraplus.py): lora_B and every 1-D parameter at
lr * ratio; LoRA's own Embedding layers (lora_embedding_A/B) at loraplus_lr_embedding; everything
else, lora_A and the modules_to_save / trainable-token tensors included, at lr. The script asserts
that grouping (so a PEFT change that moves the extras shows up here) and writes <case>.golden.bin:
    meta.json                 case, ratio, the lr multiplier of each trainable tensor (saved names)
    train.lr                  (steps) float64, group A's lr of each step (what vktune's schedule gives)
    train.loss / grad_norm    (steps) each step's loss and gradient norm before clipping
    train.final.<saved name>  every trainable tensor after the 20 steps, under adapter_model.safetensors' names
"""
import json
import os
import sys

import numpy as np
import torch

import golden_io
import hf_golden
import peft_extras_golden as extras

PINNED = hf_golden.PINNED
import peft  # noqa: E402
import transformers  # noqa: E402
from peft.optimizers import create_loraplus_optimizer  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "data", "loraplus")
TRAIN = dict(steps=20, lr=1e-3, loraplus_lr_ratio=16.0, weight_decay=0.01, max_grad_norm=1.0, warmup_steps=2)
CASES = ["mts_untied", "tokens_tied"]


def train(model, ids, mask):
    labels = ids.masked_fill(mask == 0, -100)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = create_loraplus_optimizer(model, torch.optim.AdamW, lr=TRAIN["lr"],
                                    loraplus_lr_ratio=TRAIN["loraplus_lr_ratio"],
                                    loraplus_weight_decay=TRAIN["weight_decay"], betas=(0.9, 0.999), eps=1e-8,
                                    foreach=False)
    schedule = transformers.get_linear_schedule_with_warmup(opt, TRAIN["warmup_steps"], TRAIN["steps"])
    scales = {}
    names = {id(p): n for n, p in model.named_parameters()}
    for group in opt.param_groups:
        for p in group["params"]:
            scales[extras.saved_name(names[id(p)])] = group["initial_lr"] / TRAIN["lr"]  # before the schedule
    lrs, losses, norms = [], [], []
    for _ in range(TRAIN["steps"]):
        lrs.append(opt.param_groups[0]["lr"])
        opt.zero_grad(set_to_none=True)
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        norms.append(float(torch.nn.utils.clip_grad_norm_(params, TRAIN["max_grad_norm"])))
        opt.step()
        schedule.step()
        losses.append(float(loss.detach()))
    return scales, lrs, losses, norms


def make_case(case, out_dir):
    family, seed, _ = extras.CASES[case]
    ids, mask = hf_golden.golden_batch(128, seed)
    adapter = os.path.join(extras.OUT, case, "adapter")
    model = peft.PeftModel.from_pretrained(extras.load_base(family), adapter, is_trainable=True)
    scales, lrs, losses, norms = train(model, ids, mask)
    # PEFT's grouping as documented above: B at the ratio, everything else (the extras too) at lr.
    assert scales and set(scales.values()) == {1.0, TRAIN["loraplus_lr_ratio"]}, scales
    for name, scale in scales.items():
        assert (scale != 1.0) == ("lora_B" in name), (name, scale)
    rows = [("meta.json", np.frombuffer(json.dumps({"case": case, "adapter": "tests/data/peft_extras/" + case,
                                                    "train": TRAIN, "lr_scales": scales, "versions": PINNED},
                                                   sort_keys=True).encode(), dtype=np.uint8))]
    rows.append(("train.lr", np.asarray(lrs, dtype=np.float64)))
    rows.append(("train.loss", np.asarray(losses, dtype=np.float32)))
    rows.append(("train.grad_norm", np.asarray(norms, dtype=np.float32)))
    for name, p in sorted(model.named_parameters()):
        if p.requires_grad:
            rows.append(("train.final." + extras.saved_name(name), p.detach().numpy().astype(np.float32)))
    golden_io.write_golden(os.path.join(out_dir, case + ".golden.bin"), rows)
    print("%-12s ratio %g: %d trainable tensors (%d at lr * ratio), loss %.4f -> %.4f" %
          (case, TRAIN["loraplus_lr_ratio"], len(scales), sum(s != 1.0 for s in scales.values()), losses[0],
           losses[-1]))


def run(out_dir):
    extras.run_cases(make_case, CASES, out_dir)


def main():
    if os.environ.get("PYTHONHASHSEED") != "0":
        os.execve(sys.executable, [sys.executable] + sys.argv, dict(os.environ, PYTHONHASHSEED="0"))
    hf_golden.check_versions()
    hf_golden.write_or_verify(run, OUT, "tests/data/loraplus")


if __name__ == "__main__":
    main()
