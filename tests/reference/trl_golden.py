"""Golden data for preference finetuning from TRL's own code (DPO sigmoid/ipo/hinge, ORPO).

Run with the pinned environment (these exact versions; the script refuses others):
    /work/venv/bin/python tests/reference/trl_golden.py            # rewrite tests/data/preference/
    /work/venv/bin/python tests/reference/trl_golden.py --verify   # regenerate in memory, fail unless identical

The model is hf_golden.py's tiny Llama 3 (tests/data/hf/llama3) with its PEFT adapter
(init_lora_weights=False: B is non-zero, so the policy differs from the reference). Two preference
pairs of token ids (prompt, chosen, rejected; BOS first, EOS ending each answer) are scored:
  dpo_<loss>.*  DPOTrainer._compute_loss itself (TRL 1.16), called on a stand-in `self` that holds the
                attributes it reads; the model is TRL's fused-LM-head PeftModel, and the reference
                log-probs come from TRL's own path for a PEFT model without ref_model (use_adapter with
                the adapter disabled). beta 0.1, loss_type sigmoid | ipo | hinge.
  orpo.*        ORPOTrainer.get_batch_logps (average_log_prob=True) and ORPOTrainer.odds_ratio_loss,
                called as TRL's concatenated_forward / get_batch_loss_metrics combine them: loss =
                NLL(chosen rows, prompt and answer, nn.CrossEntropyLoss) - mean(beta * logsigmoid(log odds)).
  kto.*         KTOTrainer._compute_loss itself (loss_type kto, beta 0.1, desirable_weight 1,
                undesirable_weight 1), on a stand-in `self` as for DPO, with KTOTrainer._compute_kl_logps bound to
                it; four unpaired examples (labels true, false, true, false), each KL row the example's prompt with
                the previous example's completion (TRL's rotation by one within the batch). Its batch is kto.batch.*
                (completion weights 1 desirable, 0.75 undesirable) and it logs kl instead of rewards/accuracies.
  accum.*       --gradient-accumulation-steps 2 (accumulation_rows): DPO sigmoid and ORPO on accum.batch.* (one pair
                per micro-batch, chosen rows of unequal length), KTO on kto.batch.* (two examples per micro-batch),
                each micro-batch's loss / 2 as HF Trainer.training_step scales it; the step's loss and gradients.
Each variant holds loss, the metrics TRL logs (rewards/chosen, rewards/rejected, rewards/accuracies,
rewards/margins, logps/chosen, logps/rejected) and grad.<PEFT name> of every LoRA tensor (loss.backward()).
The batch is written in vktune's row order (chosen, rejected of pair 0, then pair 1); TRL's own order
(all chosen rows, then all rejected) is used for the calls. batch.weights: 1 answer tokens, 0.5 prompt
tokens (vktune's marker), 0 the first token and padding.
"""
import collections
import os
import sys
import types

import numpy as np
import torch

import golden_io

PINNED = {"torch": "2.15.0", "transformers": "5.23.0", "peft": "0.21.2", "trl": "1.16.0"}

import peft  # noqa: E402
import transformers  # noqa: E402
import trl  # noqa: E402
from trl.experimental.orpo import ORPOTrainer  # noqa: E402
from trl.trainer.dpo_trainer import DPOTrainer  # noqa: E402
from trl.trainer.kto_trainer import KTOTrainer  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
MODEL = os.path.join(HERE, "..", "data", "hf", "llama3")
OUT = os.path.join(HERE, "..", "data", "preference", "trl.golden.bin")
BOS_ID, EOS_ID, PAD_ID = 1, 2, 0
BETA = 0.1
# (prompt, chosen, rejected) lengths; answers end with EOS (counted here).
PAIRS = [(4, 6, 4), (6, 4, 7)]
METRICS = ["rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins", "logps/chosen",
           "logps/rejected"]


def check_versions():
    found = {"torch": torch.__version__.split("+")[0], "transformers": transformers.__version__,
             "peft": peft.__version__, "trl": trl.__version__}
    for name, version in PINNED.items():
        if found[name] != version:
            sys.exit(f"trl_golden.py is pinned to {name} {version}, found {found[name]}")


def make_batch(pair_lengths=PAIRS, seed=7):
    """TRL's layout: input_ids/attention_mask/completion_mask (2*pairs, seq), chosen rows first."""
    generator = torch.Generator().manual_seed(seed)
    seq = max(p + max(c, r) for p, c, r in pair_lengths)
    rows = {"chosen": [], "rejected": []}
    for prompt_len, chosen_len, rejected_len in pair_lengths:
        prompt = [BOS_ID] + torch.randint(3, 128, (prompt_len - 1,), generator=generator).tolist()
        for side, length in (("chosen", chosen_len), ("rejected", rejected_len)):
            answer = torch.randint(3, 128, (length - 1,), generator=generator).tolist() + [EOS_ID]
            rows[side].append((prompt, answer))
    ids, attention, completion = [], [], []
    for side in ("chosen", "rejected"):
        for prompt, answer in rows[side]:
            tokens = prompt + answer
            pad = seq - len(tokens)
            ids.append(tokens + [PAD_ID] * pad)
            attention.append([1] * len(tokens) + [0] * pad)
            completion.append([0] * len(prompt) + [1] * len(answer) + [0] * pad)
    return {"input_ids": torch.tensor(ids), "attention_mask": torch.tensor(attention),
            "completion_mask": torch.tensor(completion)}


def load_model():
    base = transformers.AutoModelForCausalLM.from_pretrained(MODEL, dtype=torch.float32,
                                                             attn_implementation="eager")
    model = peft.PeftModel.from_pretrained(base, os.path.join(MODEL, "adapter"), is_trainable=True)
    model.train()  # lora_dropout is 0: train mode changes nothing but what TRL reads
    return model


class Accelerator:
    device = torch.device("cpu")

    @staticmethod
    def gather(x):
        return x

    gather_for_metrics = gather

    @staticmethod
    def unwrap_model(model):
        return model


def fused_head(model):
    """As DPOTrainer/KTOTrainer.__init__: TRL's fused LM head on the base model under PEFT (once per model)."""
    from trl.trainer.utils import add_fused_lm_head  # TRL's fused LM head: outputs.log_probs etc.

    if not getattr(model, "_golden_fused_head", False):
        add_fused_lm_head(model.get_base_model(), outputs=("log_probs", "entropy", "mean_logits", "is_top1"))
        model._golden_fused_head = True


def dpo_variant(model, batch, loss_type, scale=1.0):
    fused_head(model)
    stand_in = types.SimpleNamespace(
        model=model, ref_model=None, accelerator=Accelerator(), aux_loss_enabled=False, ld_alpha=None,
        precompute_ref_logps=False, args=types.SimpleNamespace(gradient_checkpointing_kwargs=None),
        f_divergence_type="reverse_kl", loss_types=[loss_type], loss_weights=[1.0], beta=BETA, label_smoothing=0.0,
        use_weighting=False, _metrics={"train": collections.defaultdict(list)}, _total_train_tokens=0, _tp_size=1)
    loss = DPOTrainer._compute_loss(stand_in, model, batch, False)
    (loss * scale).backward()
    metrics = {name: stand_in._metrics["train"][name][0] for name in METRICS}
    return loss.item(), metrics


def orpo_variant(model, batch, scale=1.0):
    ids, attention, completion = batch["input_ids"], batch["attention_mask"], batch["completion_mask"]
    logits = model(input_ids=ids, attention_mask=attention).logits
    pairs = ids.shape[0] // 2
    # concatenated_forward: NLL over every real token of the chosen rows; logps on the answer labels.
    nll_labels = torch.where(attention == 1, ids, -100)
    nll = torch.nn.CrossEntropyLoss()(logits[:pairs, :-1, :].reshape(-1, logits.shape[-1]),
                                      nll_labels[:pairs, 1:].reshape(-1))
    answer_labels = torch.where(completion == 1, ids, -100)
    logps = ORPOTrainer.get_batch_logps(logits, answer_labels, average_log_prob=True)
    stand_in = types.SimpleNamespace(beta=BETA, accelerator=Accelerator())
    losses, chosen_rewards, rejected_rewards, _, _ = ORPOTrainer.odds_ratio_loss(stand_in, logps[:pairs], logps[pairs:])
    loss = nll - losses.mean()  # get_batch_loss_metrics
    (loss * scale).backward()
    metrics = {"rewards/chosen": chosen_rewards.mean().item(), "rewards/rejected": rejected_rewards.mean().item(),
               "rewards/accuracies": (chosen_rewards > rejected_rewards).float().mean().item(),
               "rewards/margins": (chosen_rewards - rejected_rewards).mean().item(),
               "logps/chosen": logps[:pairs].mean().item(), "logps/rejected": logps[pairs:].mean().item()}
    return loss.item(), metrics


KTO_EXAMPLES = [(4, 5, True), (3, 6, False), (5, 3, True), (4, 4, False)]  # (prompt, completion incl. EOS, label)
KTO_METRICS = ["rewards/chosen", "rewards/rejected", "rewards/margins", "logps/chosen", "logps/rejected", "kl"]


def kto_examples():
    generator = torch.Generator().manual_seed(14)  # a batch whose KL estimate is positive (not clamped to 0)
    prompts, completions = [], []
    for prompt_len, completion_len, _ in KTO_EXAMPLES:
        prompts.append([BOS_ID] + torch.randint(3, 128, (prompt_len - 1,), generator=generator).tolist())
        completions.append(torch.randint(3, 128, (completion_len - 1,), generator=generator).tolist() + [EOS_ID])
    return prompts, completions, [label for _, _, label in KTO_EXAMPLES]


def kto_batch(rows=None):
    """KTO's collated batch of the examples `rows` (all by default), the KL rows rotated within it."""
    prompts, completions, labels = kto_examples()
    rows = rows if rows is not None else range(len(prompts))
    prompts, completions, labels = [prompts[i] for i in rows], [completions[i] for i in rows], [labels[i] for i in rows]
    kl_completions = completions[-1:] + completions[:-1]  # add_kl_completion_ids
    seq = max(max(len(p) + len(c) for p, c in zip(prompts, completions)),
              max(len(p) + len(c) for p, c in zip(prompts, kl_completions)))

    def pad(pairs):
        ids, attention, completion = [], [], []
        for prompt, answer in pairs:
            tokens = prompt + answer
            rest = seq - len(tokens)
            ids.append(tokens + [PAD_ID] * rest)
            attention.append([1] * len(tokens) + [0] * rest)
            completion.append([0] * len(prompt) + [1] * len(answer) + [0] * rest)
        return torch.tensor(ids), torch.tensor(attention), torch.tensor(completion)

    ids, attention, completion = pad(list(zip(prompts, completions)))
    kl_ids, kl_attention, kl_completion = pad(list(zip(prompts, kl_completions)))
    return {"input_ids": ids, "attention_mask": attention, "completion_mask": completion, "KL_input_ids": kl_ids,
            "KL_attention_mask": kl_attention, "KL_completion_mask": kl_completion, "label": torch.tensor(labels)}


def kto_variant(model, batch, scale=1.0):
    fused_head(model)
    stand_in = types.SimpleNamespace(
        model=model, ref_model=None, accelerator=Accelerator(), aux_loss_enabled=False, precompute_ref_logps=False,
        args=types.SimpleNamespace(gradient_checkpointing_kwargs=None), calculate_KL=True, loss_type="kto", beta=BETA,
        desirable_weight=1.0, undesirable_weight=1.0, _metrics={"train": collections.defaultdict(list)},
        _total_train_tokens=0, _tp_size=1)
    stand_in._compute_kl_logps = types.MethodType(KTOTrainer._compute_kl_logps, stand_in)
    loss = KTOTrainer._compute_loss(stand_in, model, batch, False)
    (loss * scale).backward()
    return loss.item(), {name: stand_in._metrics["train"][name][0] for name in KTO_METRICS}


def vktune_batch_rows(prefix, batch):
    """The pairs batch in vktune's row order (chosen, rejected of pair 0, then pair 1) and weights."""
    pairs = batch["input_ids"].shape[0] // 2
    order = [i for p in range(pairs) for i in (p, pairs + p)]  # vktune: chosen, rejected per pair
    ids = batch["input_ids"][order]
    weights = (batch["completion_mask"][order].float() + 0.5 * (batch["attention_mask"][order]
                                                                  - batch["completion_mask"][order]).float())
    weights[:, 0] = 0
    return [(prefix + "ids", ids.numpy().astype(np.int32)), (prefix + "weights", weights.numpy().astype(np.float32)),
            (prefix + "positions", torch.arange(ids.shape[1]).expand(ids.shape).numpy().astype(np.int32)),
            (prefix + "lengths", batch["attention_mask"][order].sum(1).numpy().astype(np.int32))]


def build():
    torch.manual_seed(0)
    batch = make_batch()
    rows = vktune_batch_rows("batch.", batch) + [("beta", np.array([BETA], np.float64))]
    variants = [(f"dpo_{loss_type}", loss_type) for loss_type in ("sigmoid", "ipo", "hinge")] + [("orpo", None)]
    for variant, loss_type in variants:
        model = load_model()
        loss, metrics = dpo_variant(model, batch, loss_type) if loss_type else orpo_variant(model, batch)
        rows.append((variant + ".loss", np.array([loss], np.float64)))
        for name in METRICS:
            rows.append((variant + "." + name, np.array([metrics[name]], np.float64)))
        for name, parameter in model.named_parameters():
            if parameter.requires_grad:
                rows.append((variant + ".grad." + name.replace(".default", ""),
                             parameter.grad.detach().numpy().astype(np.float32)))
        print(f"{variant}: loss {loss:.6f} " + " ".join(f"{k} {v:.5f}" for k, v in metrics.items()))
    batch = kto_batch()
    weights = batch["completion_mask"].float() * torch.where(batch["label"], 1.0, 0.75)[:, None] + 0.5 * (
        batch["attention_mask"] - batch["completion_mask"]).float()
    weights[:, 0] = 0
    rows += [("kto.batch.ids", batch["input_ids"].numpy().astype(np.int32)),
             ("kto.batch.weights", weights.numpy().astype(np.float32)),
             ("kto.batch.positions", torch.arange(weights.shape[1]).expand(weights.shape).numpy().astype(np.int32)),
             ("kto.batch.lengths", batch["attention_mask"].sum(1).numpy().astype(np.int32))]
    model = load_model()
    loss, metrics = kto_variant(model, batch)
    rows.append(("kto.loss", np.array([loss], np.float64)))
    for name in KTO_METRICS:
        rows.append(("kto." + name, np.array([metrics[name]], np.float64)))
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            rows.append(("kto.grad." + name.replace(".default", ""), parameter.grad.detach().numpy().astype(np.float32)))
    print(f"kto: loss {loss:.6f} " + " ".join(f"{k} {v:.5f}" for k, v in metrics.items()))
    rows += accumulation_rows()
    return rows


def gradient_rows(prefix, model):
    return [(prefix + ".grad." + name.replace(".default", ""), parameter.grad.detach().numpy().astype(np.float32))
            for name, parameter in model.named_parameters() if parameter.requires_grad]


def trim(batch, rows):
    """The collator's batch of `rows` alone: padded to its own longest row."""
    keep = int(max(batch[key][rows].sum(1).max() for key in batch if key.endswith("attention_mask")))
    return {key: value[rows][:, :keep] if value.dim() == 2 else value[rows] for key, value in batch.items()}


# The accumulation pairs: chosen rows of different lengths (8 and 7 NLL targets), so ORPO's per-micro-batch NLL
# mean differs from the mean over both micro-batches' tokens.
ACCUMULATION_PAIRS = [(3, 6, 4), (5, 3, 7)]


def accumulation_rows():
    """--gradient-accumulation-steps 2 with one pair per micro-batch (KTO: kto.batch's four examples, two per
    micro-batch, its KL rows rotated within each micro-batch as add_kl_completion_ids does with
    batch_size=per_device_train_batch_size). HF Trainer.training_step divides each micro-batch's loss by the
    accumulation steps unless the trainer says its loss is already scaled (loss_is_scaled_for_ga): all three
    trainers say False, so the step's gradient is the mean of the micro-batches' gradients and the logged loss the
    mean of their losses. Each micro-batch normalises by itself: DPO/ORPO's mean over its pairs, ORPO's NLL over its
    chosen tokens, KTO's mean over its examples and its KL estimate, so 2 x 1 differs from 1 x 2 for ORPO (unequal
    chosen lengths) and KTO. Written as accum.batch.* (the pairs, vktune's order) and accum.<variant>.loss /
    accum.<variant>.grad.*; the printout compares with the same examples as one micro-batch."""
    for trainer in (DPOTrainer, ORPOTrainer, KTOTrainer):
        assert trainer.loss_is_scaled_for_ga is False, f"{trainer.__name__} scales its loss for accumulation now"
    steps = 2
    batch = make_batch(ACCUMULATION_PAIRS, seed=21)
    rows = vktune_batch_rows("accum.batch.", batch)
    pairs = batch["input_ids"].shape[0] // 2
    dpo = lambda model, micro_batch, scale=1.0: dpo_variant(model, micro_batch, "sigmoid", scale)  # noqa: E731
    cases = [("dpo_sigmoid", dpo, batch, [trim(batch, [p, pairs + p]) for p in range(pairs)]),
             ("orpo", orpo_variant, batch, [trim(batch, [p, pairs + p]) for p in range(pairs)]),
             ("kto", kto_variant, kto_batch(), [kto_batch([0, 1]), kto_batch([2, 3])])]
    for variant, run, whole, micro_batches in cases:
        model = load_model()
        one_loss, _ = run(model, whole)
        one_grads = dict(gradient_rows("", model))
        model = load_model()
        step_loss = 0.0
        for micro_batch in micro_batches:
            loss, _ = run(model, micro_batch, 1.0 / steps)  # training_step: loss / current_gradient_accumulation_steps
            step_loss += loss / steps
        grads = gradient_rows("accum." + variant, model)
        rows.append(("accum." + variant + ".loss", np.array([step_loss], np.float64)))
        rows += grads
        worst = max(np.abs(g - one_grads[name[len("accum." + variant):]]).max() / np.abs(g).max() for name, g in grads)
        print(f"accum.{variant}: loss {step_loss:.6f} (1 x 2: {one_loss:.6f}); "
              f"gradients differ from 1 x 2 by up to {worst:.3g} of the largest")
    return rows


def main():
    check_versions()
    rows = build()
    if "--verify" in sys.argv:
        expected = golden_io.read_golden(OUT)
        for name, value in rows:
            if not np.array_equal(expected[name], value):
                sys.exit(f"{OUT}: {name} differs from a fresh run")
        print("verified", OUT)
        return
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    golden_io.write_golden(OUT, rows)
    print("wrote", OUT)


if __name__ == "__main__":
    main()
