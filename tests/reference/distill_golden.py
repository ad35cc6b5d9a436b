"""Golden data for knowledge distillation (`vktune train --objective distill`) from torch + transformers + PEFT.

Run with the pinned environment (these exact versions; the script refuses others):
    /work/venv/bin/python tests/reference/distill_golden.py            # rewrite tests/data/distill/
    /work/venv/bin/python tests/reference/distill_golden.py --verify   # regenerate in memory, fail unless identical

The student is hf_golden.py's tiny Llama 3 (tests/data/hf/llama3, hidden 32, 2 layers) with its PEFT adapter
(init_lora_weights=False). The teacher is another tiny random Llama of a different size (hidden 48, 3 layers,
4 heads of 12, 2 KV heads, same vocabulary of 128), built here with fixed seeds and saved into
tests/data/distill/teacher/ (config.json + model.safetensors, fp32). On a batch of two rows (BOS, a prompt, an
answer, padding), the loss is Hinton's distillation loss per token, over the positions and weights the
cross-entropy uses (position t predicts token t+1 with weight w[t+1]: 1 answer tokens, 0.5 prompt tokens as
--prompt-loss-weight 0.5, 0 the first token and padding):
    loss = sum_t w_t * (alpha * T^2 * KL(softmax(teacher_t / T) || softmax(student_t / T)) + (1 - alpha) * CE_t)
           / sum_t w_t
computed with torch.nn.functional.kl_div(log_softmax(student / T), log_softmax(teacher / T), log_target=True)
and cross_entropy (reduction none); loss.backward() gives every LoRA gradient (grad.<PEFT name>). The teacher
is frozen (torch.no_grad). Written: batch.*, temperature, alpha, loss, grad.*, teacher.logits (rows, seq, vocab).
"""
import os
import sys

import numpy as np
import torch

import golden_io

PINNED = {"torch": "2.15.0", "transformers": "5.23.0", "peft": "0.21.2"}

import peft  # noqa: E402
import transformers  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
STUDENT = os.path.join(HERE, "..", "data", "hf", "llama3")
TEACHER = os.path.join(HERE, "..", "data", "distill", "teacher")
OUT = os.path.join(HERE, "..", "data", "distill", "distill.golden.bin")
BOS_ID, EOS_ID, PAD_ID = 1, 2, 0
TEMPERATURE, ALPHA, PROMPT_WEIGHT = 2.0, 0.6, 0.5
ROWS = [(4, 7), (6, 3)]  # (prompt incl. BOS, answer incl. EOS)


def check_versions():
    found = {"torch": torch.__version__.split("+")[0], "transformers": transformers.__version__,
             "peft": peft.__version__}
    for name, version in PINNED.items():
        if found[name] != version:
            sys.exit(f"distill_golden.py is pinned to {name} {version}, found {found[name]}")


def build_teacher(write):
    torch.manual_seed(22)
    config = transformers.LlamaConfig(vocab_size=128, hidden_size=48, intermediate_size=48, num_hidden_layers=3,
                                      num_attention_heads=4, num_key_value_heads=2, head_dim=12,
                                      max_position_embeddings=256, initializer_range=0.1, bos_token_id=BOS_ID,
                                      eos_token_id=EOS_ID, pad_token_id=PAD_ID, tie_word_embeddings=False)
    model = transformers.LlamaForCausalLM(config).float().eval()
    if write:
        model.save_pretrained(TEACHER)
    return model


def make_batch():
    generator = torch.Generator().manual_seed(5)
    seq = max(p + a for p, a in ROWS) + 1
    ids, weights, lengths = [], [], []
    for prompt_len, answer_len in ROWS:
        prompt = [BOS_ID] + torch.randint(3, 128, (prompt_len - 1,), generator=generator).tolist()
        answer = torch.randint(3, 128, (answer_len - 1,), generator=generator).tolist() + [EOS_ID]
        pad = seq - prompt_len - answer_len
        ids.append(prompt + answer + [PAD_ID] * pad)
        weights.append([0.0] + [PROMPT_WEIGHT] * (prompt_len - 1) + [1.0] * answer_len + [0.0] * pad)
        lengths.append(prompt_len + answer_len)
    return torch.tensor(ids), torch.tensor(weights), torch.tensor(lengths)


def build(write_teacher):
    torch.manual_seed(0)
    teacher = build_teacher(write_teacher)
    base = transformers.AutoModelForCausalLM.from_pretrained(STUDENT, dtype=torch.float32, attn_implementation="eager")
    student = peft.PeftModel.from_pretrained(base, os.path.join(STUDENT, "adapter"), is_trainable=True)
    ids, weights, lengths = make_batch()
    attention = (torch.arange(ids.shape[1])[None, :] < lengths[:, None]).long()
    with torch.no_grad():
        teacher_logits = teacher(input_ids=ids, attention_mask=attention).logits
    student_logits = student(input_ids=ids, attention_mask=attention).logits
    vocab = student_logits.shape[-1]
    s = student_logits[:, :-1].reshape(-1, vocab)
    t = teacher_logits[:, :-1].reshape(-1, vocab)
    targets = ids[:, 1:].reshape(-1)
    w = weights[:, 1:].reshape(-1)
    kl = torch.nn.functional.kl_div(torch.log_softmax(s / TEMPERATURE, -1), torch.log_softmax(t / TEMPERATURE, -1),
                                    reduction="none", log_target=True).sum(-1)
    ce = torch.nn.functional.cross_entropy(s, targets, reduction="none")
    per_token = ALPHA * TEMPERATURE ** 2 * kl + (1 - ALPHA) * ce
    loss = (w * per_token).sum() / w.sum()
    loss.backward()
    rows = [("batch.ids", ids.numpy().astype(np.int32)), ("batch.weights", weights.numpy().astype(np.float32)),
            ("batch.positions", torch.arange(ids.shape[1]).expand(ids.shape).numpy().astype(np.int32)),
            ("batch.lengths", lengths.numpy().astype(np.int32)),
            ("temperature", np.array([TEMPERATURE], np.float64)), ("alpha", np.array([ALPHA], np.float64)),
            ("loss", np.array([loss.item()], np.float64)),
            ("teacher.logits", teacher_logits.numpy().astype(np.float32))]
    for name, parameter in student.named_parameters():
        if parameter.requires_grad:
            rows.append(("grad." + name.replace(".default", ""), parameter.grad.detach().numpy().astype(np.float32)))
    print(f"loss {loss.item():.6f} (KL part {(w * kl).sum().item() / w.sum().item():.6f}, "
          f"CE part {(w * ce).sum().item() / w.sum().item():.6f})")
    return rows


def main():
    check_versions()
    verify = "--verify" in sys.argv
    rows = build(write_teacher=not verify)
    golden_io.write_or_verify(OUT, rows, verify)

if __name__ == "__main__":
    main()
