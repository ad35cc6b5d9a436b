"""Loss trajectories of PyTorch CPU autocast(bf16) training, for tests/test_train_autocast.cpp (issue 15 item 6).

Run with the pinned environment (these exact versions; the script refuses others):
    /work/venv/bin/python tests/reference/autocast_golden.py           # rewrite tests/data/autocast/
    /work/venv/bin/python tests/reference/autocast_golden.py --verify  # regenerate in a temp dir, fail
                                                                       # unless the file is identical

Fixture: hf_golden.py's tiny Llama (tests/data/hf/llama3: hidden 32, 2 layers, vocab 128, fp32) with its
committed PEFT adapter (r=4, all-linear) and its golden batch (tests/data/hf/llama3.golden.bin: two
sequences, 13 and 9 tokens). Two runs of 20 steps, each under
    with torch.autocast("cpu", dtype=torch.bfloat16): loss = model(ids, attention_mask, labels).loss
and again without autocast (fp32, for scale):
    lora  PeftModel.from_pretrained(is_trainable=True): LoRA A/B trained, lr 1e-3
    full  every weight trained, lr 1e-4 (HF Trainer's groups: no weight decay on norms)
torch.optim.AdamW(betas (0.9, 0.999), eps 1e-8, weight_decay 0.01, foreach=False), clip_grad_norm_(1.0),
constant lr. Autocast keeps the fp32 parameters and casts each matmul's inputs (weights and
activations) to bf16, its output bf16; norms, softmax and the loss run in fp32 on the values they get.
Writes tests/data/autocast/trajectories.json: per run the 20 losses (autocast and fp32) and the
largest |logit| of step 1 (the test's bound needs it).
"""
import json
import os
import sys

import torch

import hf_golden

PINNED = hf_golden.PINNED
import peft  # noqa: E402
import transformers  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "data", "autocast")
FIXTURE = os.path.join(HERE, "..", "data", "hf", "llama3")
SEED = 1000  # hf_golden.py's seed of llama3 (the first family): its golden batch
RUNS = {"lora": dict(lr=1e-3), "full": dict(lr=1e-4)}
TRAIN = dict(steps=20, weight_decay=0.01, max_grad_norm=1.0, betas=[0.9, 0.999], eps=1e-8)


def load(run):
    model = transformers.AutoModelForCausalLM.from_pretrained(FIXTURE, attn_implementation="eager",
                                                              dtype=torch.float32)
    if run == "lora":
        return peft.PeftModel.from_pretrained(model, os.path.join(FIXTURE, "adapter"), is_trainable=True)
    for p in model.parameters():
        p.requires_grad_(True)
    return model


def train(run, autocast):
    model = load(run)
    model.train()
    ids, mask = hf_golden.golden_batch(128, SEED)
    labels = ids.masked_fill(mask == 0, -100)
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if "norm" in name else decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": TRAIN["weight_decay"]},
                             {"params": no_decay, "weight_decay": 0.0}], lr=RUNS[run]["lr"],
                            betas=tuple(TRAIN["betas"]), eps=TRAIN["eps"], foreach=False)
    params = decay + no_decay
    losses, largest_logit = [], None
    for _ in range(TRAIN["steps"]):
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            out = model(input_ids=ids, attention_mask=mask, labels=labels)
        if largest_logit is None:
            largest_logit = float(out.logits.detach().float().abs().max())
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(params, TRAIN["max_grad_norm"])
        opt.step()
        losses.append(float(out.loss.detach()))
    return losses, largest_logit


def run(out_dir):
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    os.makedirs(out_dir, exist_ok=True)
    result = {"fixture": "tests/data/hf/llama3", "batch": "tests/data/hf/llama3.golden.bin", "train": TRAIN,
              "versions": PINNED, "runs": {}}
    for name, settings in RUNS.items():
        bf16, largest = train(name, True)
        fp32, _ = train(name, False)
        result["runs"][name] = {"lr": settings["lr"], "autocast_bf16": bf16, "fp32": fp32,
                                "largest_abs_logit": largest}
        print("%-4s autocast %.5f -> %.5f, fp32 %.5f -> %.5f, largest |logit| %.3f" %
              (name, bf16[0], bf16[-1], fp32[0], fp32[-1], largest))
    with open(os.path.join(out_dir, "trajectories.json"), "w") as f:
        json.dump(result, f, indent=1, sort_keys=True)
        f.write("\n")


def main():
    hf_golden.check_versions()
    hf_golden.write_or_verify(run, OUT, "tests/data/autocast")


if __name__ == "__main__":
    main()
