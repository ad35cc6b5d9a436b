"""Golden data for PEFT's LoRA initialisations (LoraConfig.init_lora_weights): pissa, pissa_niter_K, olora, gaussian.

Run with the pinned environment (these exact versions; the script refuses others):
    /work/venv/bin/python tests/reference/lora_init_golden.py           # rewrite tests/data/lora_init/
    /work/venv/bin/python tests/reference/lora_init_golden.py --verify  # regenerate in a temp dir, fail
                                                                        # unless every file is identical
    /work/venv/bin/python tests/reference/lora_init_golden.py --check-vktune
        loads each converted adapter vktune wrote (tests/data/lora_init/vktune/<case>/adapter: rank 2r plain
        LoRA, written by `VKT_WRITE_LORA_INIT=1 build/vktune_tests -tc='lora init: *converted*'`) with
        PeftModel.from_pretrained on the ORIGINAL base, compares its logits with vktune's logits of the
        finetuned residual model (vktune/<case>/logits.safetensors) and writes
        tests/data/lora_init/peft_load_check.json.

The base is tests/data/hf/llama3 (hf_golden.py's tiny Llama: hidden 32, 2 layers), LoRA r=4, alpha=8,
all-linear, on hf_golden.py's golden batch. Per case (pissa, olora) <case>.golden.bin holds
    batch.*                  the batch (two sequences, 13 and 9 tokens, right padding)
    init.<saved name>        lora_A / lora_B after PEFT's init, under adapter_model.safetensors' names
    residual.<weight name>   layer 0's base weights as PEFT left them (W - scale B A), by the model's names
    fp32.logits / loss / dembed / grad.<saved name>   PeftModel forward + backward right after the init
    nf4.logits / loss / dembed / grad.<saved name>    (olora only) the same on an NF4 base as PEFT's olora_init
                             on bitsandbytes does it: the QR of the dequantized weight, the residual quantized
                             again (NF4 + double quant by nf4.py's bitsandbytes-exact round trip)
and niter.golden.bin (pissa_niter_4, whose randomized SVD draws torch's numbers, not comparable bit by bit):
    niter.ratio              per adapted weight (layers, then q,k,v,o,gate,up,down): ||W - s B A|| (the
                             residual's norm) of PEFT's pissa_niter_4 over exact pissa's (1 = as good as exact)
    gaussian.std             the sample std of PEFT's gaussian A (all modules together); PEFT draws std 1/r
"""
import json
import os
import sys

import numpy as np
import torch

import golden_io
import hf_golden
import nf4
import peft_extras_golden as extras

PINNED = hf_golden.PINNED
import peft  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "data", "lora_init")
FAMILY, SEED = "llama3", 1300
LORA = dict(r=4, lora_alpha=8, target_modules="all-linear", lora_dropout=0.0)
MODULES = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj",
           "mlp.up_proj", "mlp.down_proj"]
CASES = ["pissa", "olora"]
NITER = "pissa_niter_4"
LOGITS_BOUND = 1e-4  # PEFT's logits of vktune's converted adapter vs vktune's own


def peft_model(init):
    torch.manual_seed(SEED)
    config = peft.LoraConfig(init_lora_weights=init, **LORA)
    return peft.get_peft_model(extras.load_base(FAMILY), config)


def base_weight(model, layer, module):
    return model.base_model.model.model.layers[layer].get_submodule(module).base_layer.weight


def lora_pair(model, layer, module):
    m = model.base_model.model.model.layers[layer].get_submodule(module)
    return m.lora_A["default"].weight, m.lora_B["default"].weight


def meta_row(meta):
    return "meta.json", np.frombuffer(json.dumps(meta, sort_keys=True).encode(), dtype=np.uint8)


def tensor_row(key, value, dtype=np.float32):
    """(key, value as a numpy array of dtype) for golden_io.write_golden."""
    return key, (value.detach().numpy() if torch.is_tensor(value) else np.asarray(value)).astype(dtype)


def batch_rows(ids, mask):
    """hf_golden.py's batch in the layout tests/golden_run.cpp reads (batch.ids, weights, positions, lengths)."""
    positions = torch.arange(hf_golden.SEQ).expand(2, hf_golden.SEQ)
    return [tensor_row("batch.ids", ids, np.int32), tensor_row("batch.weights", mask),
            tensor_row("batch.positions", positions, np.int32), tensor_row("batch.lengths", hf_golden.LENGTHS, np.int32)]


def nf4_olora(ids, mask):
    """olora_init on a Linear4bit: the dequantized weight (dequantize_module_weight), its QR, and the
    residual quantized again (Params4bit); NF4 with double quant, as hf_golden.nf4_round_trip."""
    base = extras.load_base(FAMILY)
    base.load_state_dict(hf_golden.nf4_round_trip(base))
    torch.manual_seed(SEED)
    model = peft.get_peft_model(base, peft.LoraConfig(init_lora_weights="olora", **LORA))
    with torch.no_grad():
        for layer in range(2):
            for module in MODULES:
                weight = base_weight(model, layer, module)
                weight.copy_(torch.from_numpy(nf4.dequantize_nf4(nf4.quantize_nf4(weight.contiguous().numpy()))))
    return hf_golden.forward_backward(model, ids, mask)


def make_case(case, out_dir):
    ids, mask = hf_golden.golden_batch(128, SEED)
    with torch.no_grad():
        base_logits = extras.load_base(FAMILY)(input_ids=ids, attention_mask=mask).logits
    model = peft_model(case)
    rows = [meta_row({"case": case, "base": "tests/data/hf/" + FAMILY, "lora": LORA, "init_lora_weights": case,
                      "versions": PINNED})] + batch_rows(ids, mask)

    def put(key, value):
        rows.append(tensor_row(key, value))
    for layer in range(2):
        for module in MODULES:
            a, b = lora_pair(model, layer, module)
            prefix = "base_model.model.model.layers.%d.%s." % (layer, module)
            put("init." + prefix + "lora_A.weight", a)
            put("init." + prefix + "lora_B.weight", b)
            if layer == 0:  # the residual of one layer (the other's shows in the logits)
                put("residual.model.layers.%d.%s.weight" % (layer, module), base_weight(model, layer, module))
    result = hf_golden.forward_backward(model, ids, mask)
    put("fp32.logits", result["logits"])
    put("fp32.loss", result["loss"])
    put("fp32.dembed", result["dembed"])
    for name in sorted(result["grads"]):
        put("fp32.grad." + name, result["grads"][name])
    if case == "olora":  # PEFT's olora on a bitsandbytes NF4 base, by the bnb-exact NF4 round trip (nf4.py)
        quantized = nf4_olora(ids, mask)
        put("nf4.logits", quantized["logits"])
        put("nf4.loss", quantized["loss"])
        put("nf4.dembed", quantized["dembed"])
        for name in sorted(quantized["grads"]):
            put("nf4.grad." + name, quantized["grads"][name])
    real = mask.bool()
    drift = float((result["logits"][real] - base_logits[real]).abs().max())
    assert drift < 1e-4, "%s: PEFT's init changed the logits by %g" % (case, drift)
    golden_io.write_golden(os.path.join(out_dir, case + ".golden.bin"), rows)
    print("%-6s loss %.6f, %d LoRA gradients, logits after init vs base: max-abs %.3g" %
          (case, float(result["loss"]), len(result["grads"]), drift))


def make_niter(out_dir):
    exact, randomized = peft_model("pissa"), peft_model(NITER)
    # The residual is what the rank-r part leaves: its norm is ||W - s B A|| (s B A the approximation).
    residual_ratios = []
    for layer in range(2):
        for module in MODULES:
            residual_ratios.append(float(torch.linalg.norm(base_weight(randomized, layer, module)) /
                                         torch.linalg.norm(base_weight(exact, layer, module))))
    gaussian = peft_model("gaussian")
    values = torch.cat([lora_pair(gaussian, layer, module)[0].detach().flatten() for layer in range(2) for module in MODULES])
    assert all(float(lora_pair(gaussian, 0, m)[1].detach().abs().max()) == 0 for m in MODULES), "gaussian B is not zero"
    rows = [meta_row({"niter": NITER, "lora": LORA, "versions": PINNED}),
            tensor_row("niter.ratio", residual_ratios, np.float64),
            tensor_row("gaussian.std", [float(values.std())], np.float64)]
    golden_io.write_golden(os.path.join(out_dir, "niter.golden.bin"), rows)
    print("%s: residual norm over exact pissa's: mean %.4f, max %.4f; gaussian A std %.4f (1/r = %.4f)" %
          (NITER, np.mean(residual_ratios), max(residual_ratios), float(values.std()), 1 / LORA["r"]))


def run(out_dir):
    extras.run_cases(make_case, CASES, out_dir)
    make_niter(out_dir)


def check_vktune():
    """PeftModel.from_pretrained of vktune's converted adapter on the original base gives vktune's finetuned logits."""
    report = {"versions": PINNED, "bound": LOGITS_BOUND, "cases": {}}
    ids, mask = hf_golden.golden_batch(128, SEED)
    real = mask.bool()
    with torch.no_grad():
        base_logits = extras.load_base(FAMILY)(input_ids=ids, attention_mask=mask).logits
    for case in CASES:
        folder = os.path.join(OUT, "vktune", case)
        with open(os.path.join(folder, "adapter", "adapter_config.json")) as f:
            config = json.load(f)
        assert config["r"] == 2 * LORA["r"] and config["init_lora_weights"] is True, config
        model = peft.PeftModel.from_pretrained(extras.load_base(FAMILY), os.path.join(folder, "adapter"))
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=mask).logits
        ours = torch.from_numpy(golden_io.read_safetensors(os.path.join(folder, "logits.safetensors"))[0]["logits"].copy())
        error = float((logits[real] - ours.reshape(logits.shape)[real]).abs().max())
        distance = float((logits[real] - base_logits[real]).abs().max())  # finetuning moved the model
        report["cases"][case] = {"logits_max_abs": error, "distance_from_base": distance,
                                 "passed": error <= LOGITS_BOUND and distance > 100 * LOGITS_BOUND}
        print("%-6s PEFT logits of vktune's converted adapter on the original base vs vktune's finetuned: "
              "max-abs %.3g (base model differs by %.3g)" % (case, error, distance))
    with open(os.path.join(OUT, "peft_load_check.json"), "w") as f:
        json.dump(report, f, indent=2, sort_keys=True)
        f.write("\n")
    if not all(c["passed"] for c in report["cases"].values()):
        sys.exit("PEFT does not load vktune's converted adapters to the same logits")


def main():
    extras.script_main(run, check_vktune, OUT, "tests/data/lora_init")


if __name__ == "__main__":
    main()
