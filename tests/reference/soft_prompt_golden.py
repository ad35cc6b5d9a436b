"""Golden data for PEFT's soft-prompt families (issue 17): prompt tuning, prefix tuning (and, as it
comes, P-tuning), each against PEFT itself.

Run with the pinned environment (these exact versions; the script refuses others):
    /work/venv/bin/python tests/reference/soft_prompt_golden.py           # rewrite tests/data/soft_prompt/
    /work/venv/bin/python tests/reference/soft_prompt_golden.py --verify  # regenerate in a temp dir, fail
                                                                          # unless every file is identical
    /work/venv/bin/python tests/reference/soft_prompt_golden.py --check-vktune
        loads every adapter vktune wrote (tests/data/soft_prompt/vktune/<case>/adapter, written by
        `VKT_WRITE_SOFT_PROMPT=1 build/vktune_tests -tc='soft prompt: 20 AdamW*'`) with
        PeftModel.from_pretrained, compares its logits with the ones vktune computed
        (vktune/<case>/logits.safetensors) and writes tests/data/soft_prompt/peft_load_check.json.

Base model: tests/data/hf/llama3 (hf_golden.py). Cases:
    prompt_llama  PromptTuningConfig(num_virtual_tokens=5, prompt_tuning_init="TEXT"): the init text
                  tokenizes (a stub tokenizer: no tokenizer.json ships with the tiny model) to
                  INIT_TEXT_IDS, which PEFT repeats to 5 ids and embeds with the base's table.
    ptuning_mlp   PromptEncoderConfig(num_virtual_tokens=5, encoder_hidden_size=24, MLP): the prompt is
                  the output of PEFT's encoder (embedding (5, 32) -> Linear-ReLU-Linear-ReLU-Linear) on
                  the virtual token ids; the encoder's parameters train. PEFT saves only the encoder's
                  output as "prompt_embeddings" (the adapter is then a prompt-tuning one for inference),
                  so the encoder's initial parameters are in the golden file: init.<name> under the
                  names below (prompt_encoder.embedding.weight, prompt_encoder.mlp_head.0.weight, ...).
    ptuning_lstm  PromptEncoderConfig(num_virtual_tokens=5, encoder_hidden_size=12, LSTM, encoder_num_layers=2,
                  encoder_dropout=0): the encoder is a bidirectional 2-layer nn.LSTM (32 -> 2x12) then
                  Linear(24, 24)-ReLU-Linear(24, 32); otherwise as ptuning_mlp (init.prompt_encoder.lstm_head.*
                  under torch's names: weight_ih_l0, weight_hh_l0, bias_ih_l0, bias_hh_l0, ..._reverse, l1).
    prefix_llama  PrefixTuningConfig(num_virtual_tokens=3) (no prefix_projection): every layer's attention
                  sees 3 trained key/value rows (GQA: 2 kv heads, token_dim 16) before the sequence. The
                  script checks how transformers applies them: the prefix keys as stored (no RoPE) and the
                  tokens numbered P .. P+T-1 (a forward with explicit positions must match PEFT's). Its
                  batch is not expanded (batch.positions 0 .. T-1: vktune adds P itself), dembed is
                  d loss / d (embedding output), and the logits have T rows per sequence.
For prompt tuning and P-tuning, PEFT prepends the virtual tokens to inputs_embeds, the attention mask with ones and the labels with
-100; transformers' Llama then numbers the positions 0 .. N+T-1 (the prompt takes 0 .. N-1). The batch is
written in that expanded layout (N pad ids first in every row, weight 0 there; the last virtual
token predicts the first real one, as labels = input_ids make PEFT do). Per case,
tests/data/soft_prompt/<case>/adapter/ (save_pretrained) and <case>.golden.bin:
    init.ids, init.prompt_embeddings  the token ids PEFT's TEXT init used and the embeddings it made
    batch.*                      hf_golden.py's batch (13 and 9 tokens, right padding), expanded
    fp32.logits / loss / dembed  PeftModel forward (N+T rows), transformers' loss, d loss / d inputs_embeds
                                 (the virtual rows included)
    fp32.grad.<saved name>       every trainable gradient, under adapter_model.safetensors' names
    nf4.*                        the same over the NF4 (+ double quant) round trip of every linear weight
    train.lr / loss / grad_norm  20 steps of torch.optim.AdamW (peft_extras_golden.TRAIN) on the same batch
"""
import json
import os
import sys

import numpy as np
import torch

import golden_io
import hf_golden
import peft_extras_golden

PINNED = hf_golden.PINNED
import peft  # noqa: E402
import transformers  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "data")
OUT = os.path.join(DATA, "soft_prompt")
ADAPTER_FORMAT_VERSION = 1  # as model::adapter_format_version
TRAIN = peft_extras_golden.TRAIN
LOGITS_BOUND = 1e-4
INIT_TEXT_IDS = [1, 17, 42]  # what the stub tokenizer gives for the init text (BOS first, as Llama's)
INIT_TEXT = "Classify:"

CASES = {
    "prompt_llama": ("llama3", 1700, "prompt_tuning"),
    "ptuning_mlp": ("llama3", 1800, "p_tuning"),
    "prefix_llama": ("llama3", 1800, "prefix_tuning"),
    "ptuning_lstm": ("llama3", 1900, "p_tuning"),
}
ENCODER_HIDDEN = 24


class StubTokenizer:
    def __call__(self, text):
        assert text == INIT_TEXT
        return {"input_ids": list(INIT_TEXT_IDS)}


def load_base(family, state=None):
    model = transformers.AutoModelForCausalLM.from_pretrained(os.path.join(DATA, "hf", family),
                                                              attn_implementation="eager")
    if state is not None:
        model.load_state_dict(state, strict=False)
    return model.float().eval()


# P-tuning with the LSTM encoder (case ptuning_lstm): its own config.
LSTM_ENCODER_HIDDEN = 12


def ptuning_lstm_config():
    return peft.PromptEncoderConfig(task_type="CAUSAL_LM", num_virtual_tokens=5, encoder_hidden_size=LSTM_ENCODER_HIDDEN,
                                    encoder_reparameterization_type="LSTM", encoder_num_layers=2, encoder_dropout=0.0)


CASE_CONFIGS = {"ptuning_lstm": ptuning_lstm_config}  # cases whose config is not their kind's


def peft_config(kind, case=None):
    if case in CASE_CONFIGS:
        return CASE_CONFIGS[case]()
    if kind == "prompt_tuning":
        return peft.PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=5, prompt_tuning_init="TEXT",
                                       prompt_tuning_init_text=INIT_TEXT, tokenizer_name_or_path="stub")
    if kind == "p_tuning":
        return peft.PromptEncoderConfig(task_type="CAUSAL_LM", num_virtual_tokens=5, encoder_hidden_size=ENCODER_HIDDEN,
                                        encoder_reparameterization_type="MLP")
    if kind == "prefix_tuning":
        return peft.PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=3)
    raise ValueError(kind)


def build_case(case):
    family, seed, kind = CASES[case]
    torch.manual_seed(seed)
    real = transformers.AutoTokenizer.from_pretrained
    transformers.AutoTokenizer.from_pretrained = lambda *args, **kwargs: StubTokenizer()
    try:
        model = peft.get_peft_model(load_base(family), peft_config(kind, case))
    finally:
        transformers.AutoTokenizer.from_pretrained = real
    config = model.peft_config["default"]
    config.base_model_name_or_path = "tests/data/hf/" + family  # not this machine's path
    return model


def saved_name(name, kind):
    """named_parameters' name -> the name in adapter_model.safetensors (prompt tuning) or, for P-tuning's
    encoder (not saved by PEFT), the name without the adapter's ("default")."""
    if name == "prompt_encoder.default.embedding.weight" and kind in ("prompt_tuning", "prefix_tuning"):
        return "prompt_embeddings"
    if name.startswith("prompt_encoder.default.") and kind == "p_tuning":
        return "prompt_encoder." + name[len("prompt_encoder.default."):]
    if name.startswith("prompt_encoder.default.") and kind == "prefix_projection":  # vktune's buffer names
        return "prefix_encoder." + name[len("prompt_encoder.default."):]
    raise ValueError(name)


def kind_of(model):
    if getattr(model.peft_config["default"], "prefix_projection", False):
        return "prefix_projection"
    return {"PROMPT_TUNING": "prompt_tuning", "P_TUNING": "p_tuning", "PREFIX_TUNING": "prefix_tuning"}[model.peft_config["default"].peft_type.value]


def virtual_tokens(model):
    return model.peft_config["default"].num_virtual_tokens


def cells(model):
    """The cells a row gives the prompt: prompt tuning's (and P-tuning's) virtual tokens; none for prefix tuning."""
    config = model.peft_config["default"]
    return config.num_virtual_tokens if config.peft_type in (peft.PeftType.PROMPT_TUNING, peft.PeftType.P_TUNING) else 0


def check_prefix_semantics(model, ids, mask, logits):
    """transformers applies PEFT's past cache as vktune does: prefix keys without RoPE (the cache holds
    them as given), the sequence at positions P .. P+T-1 (not 0 .. T-1)."""
    n = virtual_tokens(model)
    base = model.get_base_model()
    with torch.no_grad():
        for start, same in ((n, True), (0, False)):
            positions = torch.arange(start, start + ids.shape[1]).expand(ids.shape[0], -1)
            full_mask = torch.cat((torch.ones(ids.shape[0], n, dtype=mask.dtype), mask), dim=1)
            out = base(input_ids=ids, attention_mask=full_mask, past_key_values=model.get_prompt(ids.shape[0]),
                       position_ids=positions).logits
            assert torch.allclose(out, logits, atol=1e-6) == same, "prefix positions are not P .. P+T-1"


def forward_backward(model, ids, mask):
    """Logits, loss, d loss / d inputs_embeds (as the base model receives them: prompt rows first) and
    every trainable gradient."""
    labels = ids.masked_fill(mask == 0, -100)
    seen = {}

    def keep_inputs(module, args, kwargs):
        kwargs["inputs_embeds"].retain_grad()
        seen["embeds"] = kwargs["inputs_embeds"]

    def keep_embedding(module, args, output):  # prefix tuning: the base embeds input_ids itself
        seen["embeds"] = output.detach().requires_grad_(True)
        return seen["embeds"]
    if cells(model) > 0:
        hook = model.base_model.model.register_forward_pre_hook(keep_inputs, with_kwargs=True)
    else:
        hook = model.get_base_model().model.embed_tokens.register_forward_hook(keep_embedding)
    model.zero_grad(set_to_none=True)
    out = model(input_ids=ids, attention_mask=mask, labels=labels)
    out.loss.backward()
    hook.remove()
    grads = {saved_name(n, kind_of(model)): p.grad.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    assert grads and all(float(g.abs().max()) > 0 for g in grads.values()), "a gradient is zero"
    return {"logits": out.logits.detach(), "loss": out.loss.detach(), "dembed": seen["embeds"].grad.detach(),
            "grads": grads}


def expanded_batch(ids, mask, n):
    """The batch as vktune's rows hold it: n pad cells first (weight 0), positions 0 .. n+T-1."""
    batch = ids.shape[0]
    ids_x = torch.cat((torch.full((batch, n), hf_golden.PAD_ID, dtype=ids.dtype), ids), dim=1)
    weights_x = torch.cat((torch.zeros(batch, n, dtype=mask.dtype), mask), dim=1)
    positions = torch.arange(n + ids.shape[1]).expand(batch, n + ids.shape[1])
    return ids_x, weights_x, positions, [n + length for length in hf_golden.LENGTHS]


def row_writers(rows):
    """put(key, value, dtype) and put_result(prefix, forward_backward's result): rows of a golden file."""
    def put(key, value, dtype=np.float32):
        value = value.detach().numpy() if torch.is_tensor(value) else np.asarray(value)
        rows.append((key, value.astype(dtype)))

    def put_result(prefix, result):
        named = [(key, result[key]) for key in ("logits", "loss", "dembed")]
        for key, value in named + [("grad." + n, result["grads"][n]) for n in sorted(result["grads"])]:
            put(prefix + "." + key, value)
    return put, put_result


def make_case(case, out_dir):
    family, seed, kind = CASES[case]
    ids, mask = hf_golden.golden_batch(128, seed)
    model = build_case(case)
    n = cells(model)
    folder = os.path.join(out_dir, case)
    adapter_dir = os.path.join(folder, "adapter")
    model.save_pretrained(adapter_dir)
    os.remove(os.path.join(adapter_dir, "README.md"))  # PEFT's model card: nothing a test reads
    rows = [("meta.json", np.frombuffer(json.dumps({"case": case, "base": "tests/data/hf/" + family, "kind": kind,
                                                    "train": TRAIN, "versions": PINNED,
                                                    "virtual_tokens": virtual_tokens(model)},
                                                   sort_keys=True).encode(), dtype=np.uint8))]

    put, put_result = row_writers(rows)

    if kind == "prompt_tuning":
        put("init.ids", INIT_TEXT_IDS, np.int32)
        put("init.prompt_embeddings", model.prompt_encoder["default"].embedding.weight)
    elif kind == "p_tuning":  # the encoder's parameters (PEFT's init: N(0, 1) embedding, kaiming-uniform Linear) and its output
        for name, p in model.named_parameters():
            if p.requires_grad:
                put("init." + saved_name(name, kind), p)
        put("init.prompt_embeddings", model.get_prompt_embedding_to_save("default"))
    else:  # prefix tuning: the past keys/values table
        put("init.prompt_embeddings", model.prompt_encoder["default"].embedding.weight)
    encoder_state = {n: p.detach().clone() for n, p in model.prompt_encoder["default"].state_dict().items()}
    ids_x, weights_x, positions, lengths = expanded_batch(ids, mask, n)
    put("batch.ids", ids_x, np.int32)
    put("batch.weights", weights_x, np.float32)
    put("batch.positions", positions, np.int32)
    put("batch.lengths", lengths, np.int32)
    result = forward_backward(model, ids, mask)
    if kind == "prefix_tuning":
        check_prefix_semantics(model, ids, mask, result["logits"])
    put_result("fp32", result)
    reloaded = peft.PeftModel.from_pretrained(load_base(family), adapter_dir)
    with torch.no_grad():
        again = reloaded(input_ids=ids, attention_mask=mask).logits
    assert torch.allclose(again, result["logits"], atol=1e-6), case + ": PEFT's reload differs"
    nf4_base = load_base(family, hf_golden.nf4_round_trip(load_base(family)))
    if kind == "p_tuning":  # the saved adapter has no encoder: the same encoder over the NF4 base
        quantized = peft.get_peft_model(nf4_base, peft_config(kind, case))
        quantized.prompt_encoder["default"].load_state_dict(encoder_state)
    else:  # PEFT refuses is_trainable=True for a prompt-learning adapter: the prompt is made trainable by hand.
        quantized = peft.PeftModel.from_pretrained(nf4_base, adapter_dir)
        for p in quantized.prompt_encoder.parameters():
            p.requires_grad_(True)
    put_result("nf4", forward_backward(quantized, ids, mask))
    losses = peft_extras_golden.put_training(put, model, ids, mask)
    peft_extras_golden.finish_case(out_dir, case, rows, result, losses)


def check_vktune():
    """PeftModel.from_pretrained on each adapter vktune wrote gives vktune's logits."""
    report = peft_extras_golden.new_load_report(ADAPTER_FORMAT_VERSION, LOGITS_BOUND)
    for case, family, kind, adapter, ids, mask, ours in peft_extras_golden.vktune_outputs(OUT, CASES):
        model = peft.PeftModel.from_pretrained(load_base(family), adapter)
        n = cells(model)
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=mask).logits
        real = expanded_batch(ids, mask, n)[1].bool()
        real[:, :n] = True  # the virtual rows' logits too
        error = float((logits[real] - ours.reshape(logits.shape)[real]).abs().max())
        with torch.no_grad():  # the trained prompt matters: the initial one gives other logits
            initial = peft.PeftModel.from_pretrained(load_base(family), os.path.join(OUT, case, "adapter"))
            base_logits = initial(input_ids=ids, attention_mask=mask).logits
        distance = float((logits[real] - base_logits[real]).abs().max())
        peft_extras_golden.record_load_case(report, case, error, distance, LOGITS_BOUND, "initial")
    peft_extras_golden.finish_load_check(report, OUT)


# ---- prefix_projection: prefix tuning through PEFT's PrefixEncoder MLP ------------------------------
# PrefixTuningConfig(num_virtual_tokens=3, prefix_projection=True, encoder_hidden_size=24): the prefix
# (3, 2 layers * 2 * token_dim 16) is transform(embedding) = Linear(16, 24) -> Tanh -> Linear(24, 64) on
# an Embedding(3, 16); the encoder's parameters train. PEFT's save_pretrained writes only the
# encoder's output as "prompt_embeddings" (and inference_mode: true, so from_pretrained builds a plain
# (3, 64) prefix table): the encoder's initial parameters are in the golden file, init.<vktune name>
# (prefix_encoder.embedding.weight, prefix_encoder.transform.0.weight, ...), with init.prompt_embeddings
# its output. Otherwise as prefix_llama: the batch unexpanded, dembed d loss / d (embedding output),
# fp32.grad.* / nf4.grad.* under those names, train.*. Its own files: prefix_projection.golden.bin,
# prefix_projection/adapter/, and --check-vktune's verdict in prefix_projection_load_check.json (on the
# adapter `VKT_WRITE_SOFT_PROMPT=1 build/vktune_tests -tc='prefix projection: 20*'` writes into vktune/).
PROJECTION_CASES = {"prefix_projection": ("llama3", 1900, "prefix_tuning")}
PROJECTION_HIDDEN = 24


def projection_config():
    return peft.PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=3, prefix_projection=True,
                                   encoder_hidden_size=PROJECTION_HIDDEN)


def make_projection_case(case, out_dir):
    family, seed, _ = PROJECTION_CASES[case]
    ids, mask = hf_golden.golden_batch(128, seed)
    torch.manual_seed(seed)
    model = peft.get_peft_model(load_base(family), projection_config())
    model.peft_config["default"].base_model_name_or_path = "tests/data/hf/" + family
    adapter_dir = os.path.join(out_dir, case, "adapter")
    model.save_pretrained(adapter_dir)
    os.remove(os.path.join(adapter_dir, "README.md"))
    saved = golden_io.read_safetensors(os.path.join(adapter_dir, "adapter_model.safetensors"))[0]
    assert list(saved) == ["prompt_embeddings"] and saved["prompt_embeddings"].shape == (3, 64), "PEFT saved the encoder"
    rows = [("meta.json", np.frombuffer(json.dumps({"case": case, "base": "tests/data/hf/" + family,
                                                    "kind": "prefix_projection", "train": TRAIN,
                                                    "versions": PINNED, "virtual_tokens": 3},
                                                   sort_keys=True).encode(), dtype=np.uint8))]

    put, put_result = row_writers(rows)

    for name, p in model.named_parameters():
        if p.requires_grad:
            put("init." + saved_name(name, "prefix_projection"), p)
    put("init.prompt_embeddings", model.get_prompt_embedding_to_save("default"))
    encoder_state = {n: p.detach().clone() for n, p in model.prompt_encoder["default"].state_dict().items()}
    ids_x, weights_x, positions, lengths = expanded_batch(ids, mask, 0)
    put("batch.ids", ids_x, np.int32)
    put("batch.weights", weights_x, np.float32)
    put("batch.positions", positions, np.int32)
    put("batch.lengths", lengths, np.int32)
    result = forward_backward(model, ids, mask)
    assert len(result["grads"]) == 5, sorted(result["grads"])
    check_prefix_semantics(model, ids, mask, result["logits"])
    put_result("fp32", result)
    reloaded = peft.PeftModel.from_pretrained(load_base(family), adapter_dir)  # a plain prefix: the output
    with torch.no_grad():
        again = reloaded(input_ids=ids, attention_mask=mask).logits
    assert torch.allclose(again, result["logits"], atol=1e-6), case + ": PEFT's reload differs"
    quantized = peft.get_peft_model(load_base(family, hf_golden.nf4_round_trip(load_base(family))), projection_config())
    quantized.prompt_encoder["default"].load_state_dict(encoder_state)  # the adapter has no encoder
    put_result("nf4", forward_backward(quantized, ids, mask))
    losses = peft_extras_golden.put_training(put, model, ids, mask)
    peft_extras_golden.finish_case(out_dir, case, rows, result, losses)


def check_projection():
    """--check-vktune for prefix_projection: PEFT loads the adapter vktune wrote (its prefix, the
    encoder's output) to vktune's logits; prefix_projection_load_check.json."""
    report = peft_extras_golden.new_load_report(ADAPTER_FORMAT_VERSION, LOGITS_BOUND)
    for case, family, kind, adapter, ids, mask, ours in peft_extras_golden.vktune_outputs(OUT, PROJECTION_CASES):
        with open(os.path.join(adapter, "adapter_config.json")) as f:
            config = json.load(f)
        assert config["prefix_projection"] and config["encoder_hidden_size"] == PROJECTION_HIDDEN, config
        with torch.no_grad():
            logits = peft.PeftModel.from_pretrained(load_base(family), adapter)(input_ids=ids, attention_mask=mask).logits
            initial = peft.PeftModel.from_pretrained(load_base(family), os.path.join(OUT, case, "adapter"))
            base_logits = initial(input_ids=ids, attention_mask=mask).logits
        real = mask.bool()
        error = float((logits[real] - ours.reshape(logits.shape)[real]).abs().max())
        distance = float((logits[real] - base_logits[real]).abs().max())
        peft_extras_golden.record_load_case(report, case, error, distance, LOGITS_BOUND, "initial")
    with open(os.path.join(OUT, "prefix_projection_load_check.json"), "w") as f:
        json.dump(report, f, indent=2, sort_keys=True)
        f.write("\n")
    if not report["cases"] or not all(c["passed"] for c in report["cases"].values()):
        sys.exit("PEFT does not load vktune's prefix_projection adapter to the same logits")


def run_all(out_dir):
    peft_extras_golden.run_cases(make_case, CASES, out_dir)
    peft_extras_golden.run_cases(make_projection_case, PROJECTION_CASES, out_dir)


def check_all():
    check_vktune()
    check_projection()


if __name__ == "__main__":
    peft_extras_golden.script_main(run_all, check_all, OUT, "tests/data/soft_prompt")
