"""Golden data for PEFT's extras beside LoRA: modules_to_save and trainable_token_indices.

Run with the pinned environment (these exact versions; the script refuses others):
    /work/venv/bin/python tests/reference/peft_extras_golden.py           # rewrite tests/data/peft_extras/
    /work/venv/bin/python tests/reference/peft_extras_golden.py --verify  # regenerate in a temp dir, fail
                                                                          # unless every file is identical
    /work/venv/bin/python tests/reference/peft_extras_golden.py --check-vktune
        loads every adapter vktune wrote (tests/data/peft_extras/vktune/<case>/adapter, written by
        `VKT_WRITE_PEFT_EXTRAS=1 build/vktune_tests -tc='peft extras: 20 AdamW*'`) with
        PeftModel.from_pretrained, compares its logits with the ones vktune computed
        (vktune/<case>/logits.safetensors) and writes tests/data/peft_extras/peft_load_check.json.

The base models are tests/data/hf/llama3 (untied embeddings) and tests/data/hf/smollm2 (tied), both
written by hf_golden.py. Per case (LoRA r=4, alpha=8, all-linear, A and B random, plus)
    mts_untied     modules_to_save [embed_tokens, lm_head] on llama3
    mts_tied       the same on smollm2: PEFT copies each module, so the two copies train apart
    tokens_untied  trainable_token_indices on llama3: only embed_tokens rows
    tokens_tied    the same on smollm2: the tied lm_head reads (and trains) the same rows
    layers_untied  layers_to_transform [1] (layers_pattern "layers") on llama3: LoRA in layer 1 only
it writes tests/data/peft_extras/<case>/adapter/ (save_pretrained; the extra tensors are perturbed
from the base so that a loader ignoring them gives other logits) and <case>.golden.bin:
    batch.*                      hf_golden.py's batch (two sequences, 13 and 9 tokens, right padding)
    fp32.logits / loss / dembed  PeftModel forward, transformers' loss, d loss / d embedding output
    fp32.grad.<saved name>       every trainable gradient, under adapter_model.safetensors' names
    train.lr / loss / grad_norm  20 steps of torch.optim.AdamW (constant lr 2e-3, weight decay 0.01)
                                 with clip_grad_norm_(1.0) on the same batch
"""
import json
import os
import sys

import numpy as np
import torch

import golden_io
import hf_golden

PINNED = hf_golden.PINNED
import peft  # noqa: E402
import transformers  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "data")
OUT = os.path.join(DATA, "peft_extras")
# Bumped (here and as model::adapter_format_version) whenever the adapter files vktune writes change.
ADAPTER_FORMAT_VERSION = 1
TRAIN = dict(steps=20, lr=2e-3, weight_decay=0.01, max_grad_norm=1.0)
LOGITS_BOUND = 1e-4  # the model_hf bound: PEFT's logits of vktune's adapter vs vktune's own

CASES = {
    "mts_untied": ("llama3", 1000, dict(modules_to_save=["embed_tokens", "lm_head"])),
    "mts_tied": ("smollm2", 1100, dict(modules_to_save=["embed_tokens", "lm_head"])),
    "tokens_untied": ("llama3", 1000, "tokens"),
    "tokens_tied": ("smollm2", 1100, "tokens"),
    # PEFT refuses layers_to_transform with target_modules "all-linear": the same modules, listed.
    "layers_untied": ("llama3", 1200, dict(layers_to_transform=[1], layers_pattern="layers",
                                           target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                                           "up_proj", "down_proj"])),
}


def load_base(family):
    model = transformers.AutoModelForCausalLM.from_pretrained(os.path.join(DATA, "hf", family),
                                                              attn_implementation="eager")
    return model.float().eval()


def token_indices(ids):
    """The three ids seen most often in the batch (ties: the smaller id) and the smallest unseen one."""
    values, counts = np.unique(ids[ids > hf_golden.EOS_ID].numpy(), return_counts=True)
    order = sorted(range(len(values)), key=lambda i: (-counts[i], values[i]))
    seen = [int(values[i]) for i in order[:3]]
    unseen = next(v for v in range(3, 1000) if v not in set(values.tolist()))
    return seen + [unseen]


def saved_name(name):
    """named_parameters' name -> the name in adapter_model.safetensors."""
    return (name.replace(".modules_to_save.default.", ".").replace(".trainable_tokens_delta.default",
                                                                   ".trainable_tokens_delta")
            .replace(".default.", "."))


def build_case(case, ids):
    family, seed, extra = CASES[case]
    base = load_base(family)
    if extra == "tokens":
        extra = dict(trainable_token_indices=token_indices(ids))
    torch.manual_seed(seed + 3)
    model = peft.get_peft_model(base, peft.LoraConfig(**{**hf_golden.LORA, **extra}))
    model.peft_config["default"].base_model_name_or_path = "tests/data/hf/" + family  # not this machine's path
    with torch.no_grad():  # the extras start as the base rows: move them so that they matter
        g = torch.Generator().manual_seed(seed + 4)
        for name, p in model.named_parameters():
            if p.requires_grad and "lora_" not in name:
                p.add_(0.05 * torch.randn(p.shape, generator=g))
    return model, extra


def forward_backward(model, ids, mask):
    """hf_golden's full-finetuning pass (d loss / d embedding output included) over the trainable
    parameters, named as adapter_model.safetensors names them."""
    result = hf_golden.full_forward_backward(model, ids, mask, trainable_only=True)
    result["grads"] = {saved_name(name): g for name, g in result["grads"].items()}
    assert result["grads"] and all(float(g.abs().max()) > 0 for g in result["grads"].values()), "a gradient is zero"
    return result


def train(model, ids, mask):
    labels = ids.masked_fill(mask == 0, -100)
    params = [p for p in model.parameters() if p.requires_grad]
    # transformers' Trainer (get_decay_parameter_names), which vktune follows, exempts biases from
    # weight decay: BitFit's parameters are all biases.
    decays = [not name.endswith(".bias") for name, p in model.named_parameters() if p.requires_grad]
    groups = [{"params": [p for p, d in zip(params, decays) if d], "weight_decay": TRAIN["weight_decay"]},
              {"params": [p for p, d in zip(params, decays) if not d], "weight_decay": 0.0}]
    opt = torch.optim.AdamW([g for g in groups if g["params"]], lr=TRAIN["lr"], betas=(0.9, 0.999), eps=1e-8,
                            foreach=False)
    losses, norms = [], []
    for _ in range(TRAIN["steps"]):
        opt.zero_grad(set_to_none=True)
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        norms.append(float(torch.nn.utils.clip_grad_norm_(params, TRAIN["max_grad_norm"])))
        opt.step()
        losses.append(float(loss.detach()))
    return losses, norms


def make_case(case, out_dir):
    family, seed, _ = CASES[case]
    ids, mask = hf_golden.golden_batch(128, seed)
    model, extra = build_case(case, ids)
    folder = os.path.join(out_dir, case)
    model.save_pretrained(os.path.join(folder, "adapter"))
    os.remove(os.path.join(folder, "adapter", "README.md"))  # PEFT's model card: nothing a test reads
    rows = [("meta.json", np.frombuffer(json.dumps({"case": case, "base": "tests/data/hf/" + family,
                                                    "lora": hf_golden.LORA, "extra": extra, "train": TRAIN,
                                                    "versions": PINNED}, sort_keys=True).encode(), dtype=np.uint8))]

    def put(key, value, dtype=np.float32):
        value = value.detach().numpy() if torch.is_tensor(value) else np.asarray(value)
        rows.append((key, value.astype(dtype)))
    put("batch.ids", ids, np.int32)
    put("batch.weights", mask, np.float32)
    put("batch.positions", torch.arange(hf_golden.SEQ).expand(2, hf_golden.SEQ), np.int32)
    put("batch.lengths", hf_golden.LENGTHS, np.int32)
    result = forward_backward(model, ids, mask)
    put("fp32.logits", result["logits"])
    put("fp32.loss", result["loss"])
    put("fp32.dembed", result["dembed"])
    for name in sorted(result["grads"]):
        put("fp32.grad." + name, result["grads"][name])
    # PEFT's own round trip gives the same logits (the saved adapter is complete).
    reloaded = peft.PeftModel.from_pretrained(load_base(family), os.path.join(folder, "adapter"))
    with torch.no_grad():
        again = reloaded(input_ids=ids, attention_mask=mask).logits
    assert torch.allclose(again, result["logits"], atol=1e-6), case + ": PEFT's reload differs"
    losses, norms = train(model, ids, mask)
    put("train.lr", TRAIN["lr"], np.float64)
    put("train.loss", losses)
    put("train.grad_norm", norms)
    golden_io.write_golden(os.path.join(out_dir, case + ".golden.bin"), rows)
    print("%-14s %s loss %.6f, %d trainable tensors, 20-step loss %.4f -> %.4f" %
          (case, extra, float(result["loss"]), len(result["grads"]), losses[0], losses[-1]))


def check_vktune():
    """PeftModel.from_pretrained on each adapter vktune wrote gives vktune's logits."""
    report = {"adapter_format_version": ADAPTER_FORMAT_VERSION, "versions": PINNED, "bound": LOGITS_BOUND,
              "cases": {}}
    for case, (family, seed, _) in CASES.items():
        folder = os.path.join(OUT, "vktune", case)
        ids, mask = hf_golden.golden_batch(128, seed)
        model = peft.PeftModel.from_pretrained(load_base(family), os.path.join(folder, "adapter"))
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=mask).logits
        ours = torch.from_numpy(golden_io.read_safetensors(os.path.join(folder, "logits.safetensors"))[0]["logits"].copy())
        real = mask.bool()
        error = float((logits[real] - ours.reshape(logits.shape)[real]).abs().max())
        # The adapter differs from the base model's (the check would pass without the extras otherwise).
        with torch.no_grad():
            base_logits = load_base(family)(input_ids=ids, attention_mask=mask).logits
        distance = float((logits[real] - base_logits[real]).abs().max())
        report["cases"][case] = {"logits_max_abs": error, "distance_from_base": distance,
                                 "passed": error <= LOGITS_BOUND and distance > 100 * LOGITS_BOUND}
        print("%-14s PEFT logits of vktune's adapter vs vktune's: max-abs %.3g (base model differs by %.3g)" %
              (case, error, distance))
    with open(os.path.join(OUT, "peft_load_check.json"), "w") as f:
        json.dump(report, f, indent=2, sort_keys=True)
        f.write("\n")
    if not all(c["passed"] for c in report["cases"].values()):
        sys.exit("PEFT does not load vktune's adapters to the same logits")


def run_cases(make, cases, out_dir):
    """make(case, out_dir) for each case, single-threaded and deterministic (as --verify needs)."""
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    os.makedirs(out_dir, exist_ok=True)
    for case in cases:
        make(case, out_dir)


def run(out_dir):
    run_cases(make_case, CASES, out_dir)


def put_training(put, model, ids, mask):
    """train()'s trajectory into a golden file's rows (put(key, value, dtype)): train.lr / loss / grad_norm."""
    losses, norms = train(model, ids, mask)
    put("train.lr", TRAIN["lr"], np.float64)
    put("train.loss", losses)
    put("train.grad_norm", norms)
    return losses


def finish_case(out_dir, case, rows, result, losses):
    """Writes out_dir/<case>.golden.bin and says what the case measured."""
    golden_io.write_golden(os.path.join(out_dir, case + ".golden.bin"), rows)
    print("%-12s loss %.6f, %d trainable tensors, 20-step loss %.4f -> %.4f" %
          (case, float(result["loss"]), len(result["grads"]), losses[0], losses[-1]))


def new_load_report(version, bound):
    """The --check-vktune report, before its cases."""
    return {"adapter_format_version": version, "versions": PINNED, "bound": bound, "cases": {}}


def vktune_outputs(out_dir, cases):
    """Each case vktune wrote (out_dir/vktune/<case>: adapter/, logits.safetensors): (case, family,
    kind, adapter folder, the golden batch's ids and mask, vktune's logits)."""
    for case, (family, seed, kind) in cases.items():
        folder = os.path.join(out_dir, "vktune", case)
        if not os.path.isdir(folder):
            continue
        ids, mask = hf_golden.golden_batch(128, seed)
        ours = golden_io.read_safetensors(os.path.join(folder, "logits.safetensors"))[0]["logits"].copy()
        yield case, family, kind, os.path.join(folder, "adapter"), ids, mask, torch.from_numpy(ours)


def record_load_case(report, case, error, distance, bound, reference):
    """One --check-vktune case: PEFT's logits of vktune's adapter `error` (max-abs) from vktune's, and
    `distance` from those of `reference` (what the adapter must differ from for the check to mean anything)."""
    report["cases"][case] = {"logits_max_abs": error, "distance_from_" + reference: distance,
                             "passed": error <= bound and distance > 100 * bound}
    print("%-12s PEFT logits of vktune's adapter vs vktune's: max-abs %.3g (the %s differs by %.3g)" %
          (case, error, reference, distance))


def finish_load_check(report, out_dir):
    """Writes out_dir/peft_load_check.json (the --check-vktune verdict the C++ tests read); fails
    unless every case passed."""
    with open(os.path.join(out_dir, "peft_load_check.json"), "w") as f:
        json.dump(report, f, indent=2, sort_keys=True)
        f.write("\n")
    if not report["cases"] or not all(c["passed"] for c in report["cases"].values()):
        sys.exit("PEFT does not load vktune's adapters to the same logits")


def script_main(run, check, out_dir, label):
    """The command line of this script and of peft_types_golden.py: write, --verify or --check-vktune."""
    if os.environ.get("PYTHONHASHSEED") != "0":
        os.execve(sys.executable, [sys.executable] + sys.argv, dict(os.environ, PYTHONHASHSEED="0"))
    hf_golden.check_versions()
    if "--check-vktune" in sys.argv:
        check()
    else:
        hf_golden.write_or_verify(run, out_dir, label)


def main():
    script_main(run, check_vktune, OUT, "tests/data/peft_extras")


if __name__ == "__main__":
    main()
