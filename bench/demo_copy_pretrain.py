"""Can examples/base learn to copy from its context (issue 20)? Continues its pretraining (full finetuning,
AdamW, weight decay 0.1, 10-step warmup then cosine) on rows of 128 tokens from KJV verses ("ref text" lines):
ROWS "repeat:P" packs random verses, each followed by itself with probability P; "passages" takes runs of
consecutive verses (so the next reference's book and chapter are in the context). Every 50 steps it prints the copy probe (20 random
tokens repeated: the second copy's NLL and top-1 accuracy; a model that copies gets it near 0 / 100%) and
the loss on 64 held-out plain verses (every 20th, as examples/make_corpus.sh splits).
Pinned: torch 2.15.0 (CPU), transformers 5.23.0, tokenizers 0.23.3; `bible` from Debian's bible-kjv.
  [START_MODEL=DIR] python bench/demo_copy_pretrain.py STEPS LR ROWS [OUTPUT_DIR]
  python bench/demo_copy_pretrain.py probe MODEL_DIR...   (only the verse probe: 32 held-out verses, each
      read twice; a model that copies finds the second reading easier: NLL and top-1 per token of each)
"""
import math, os, random, subprocess, sys, time
import torch
from tokenizers import Tokenizer
from transformers import AutoModelForCausalLM

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASE = os.path.join(ROOT, "examples", "base")
START = os.environ.get("START_MODEL", BASE)  # continue from an earlier run's OUTPUT_DIR
torch.manual_seed(1); random.seed(1); torch.set_num_threads(1)
tok = Tokenizer.from_file(os.path.join(BASE, "tokenizer.json"))
lines = subprocess.run(["bible", "-f", "Gen1:1-Rev22:21"], capture_output=True, text=True, check=True).stdout.splitlines()
valid, train = lines[19::20], [l for i, l in enumerate(lines) if i % 20 != 19]
encode = lambda s: tok.encode(s, add_special_tokens=False).ids


def verse_probe(model):
    first = second = top1 = count = 0
    for verse in valid[:32]:
        once = encode(verse + "\n")
        ids = torch.tensor([[model.config.bos_token_id] + once + once])  # [1, 1 + 2 * len(once)]
        with torch.no_grad(): logp = model(input_ids=ids).logits.log_softmax(-1)[0, :-1]
        nll = -logp.gather(-1, ids[0, 1:, None])[:, 0]
        n = len(once)
        first += nll[:n].sum().item(); second += nll[n:].sum().item(); count += n
        top1 += (logp[n:].argmax(-1) == ids[0, n + 1:]).float().sum().item()
    return f"verse NLL first reading {first / count:.2f}, second {second / count:.2f} (top-1 {top1 / count:.0%})"


if sys.argv[1] == "probe":
    for path in sys.argv[2:]:
        print(path, verse_probe(AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()))
    sys.exit(0)
steps, lr, rows = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
model = AutoModelForCausalLM.from_pretrained(START, dtype=torch.float32)
bos = model.config.bos_token_id

def row(length=128):
    ids = [bos]
    start = random.randrange(len(train)) if rows == "passages" else 0
    while len(ids) < length:
        if rows == "passages":
            ids += encode(train[start % len(train)] + "\n"); start += 1
        else:
            verse = encode(random.choice(train) + "\n")
            ids += verse + (verse if random.random() < float(rows.split(":")[1]) else [])
    return ids[:length]

def probe():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(300, 1800, (16, 20), generator=g)
    ids = torch.cat([torch.full((16, 1), bos), x, x], 1)  # [16, 41]
    with torch.no_grad(): logp = model(input_ids=ids).logits.log_softmax(-1)
    nll = -logp[:, :-1].gather(-1, ids[:, 1:, None])[..., 0]
    top1 = (logp[:, :-1].argmax(-1) == ids[:, 1:]).float()[:, 21:].mean().item()
    total = count = 0
    for verse in valid[:64]:
        t = torch.tensor([[bos] + encode(verse)])
        with torch.no_grad(): total += model(input_ids=t, labels=t).loss.item() * (t.shape[1] - 1)
        count += t.shape[1] - 1
    return (f"copy probe nll {nll[:, :20].mean():.2f} -> {nll[:, 21:].mean():.2f}, top-1 {top1:.0%} | "
            f"plain-verse loss {total / count:.3f}")

model.eval(); print("step 0", probe(), flush=True); model.train()
opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.1)
t0 = time.time()
for s in range(1, steps + 1):
    for group in opt.param_groups: group["lr"] = lr * min(1, s / 10) * 0.5 * (1 + math.cos(math.pi * s / steps))
    ids = torch.tensor([row() for _ in range(8)])  # [8, 128]
    loss = model(input_ids=ids, labels=ids).loss
    opt.zero_grad(); loss.backward(); torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0); opt.step()
    if s % 50 == 0:
        model.eval(); print(f"step {s} loss {loss.item():.3f} {time.time() - t0:.0f}s", probe(), flush=True); model.train()
if len(sys.argv) > 4: model.save_pretrained(sys.argv[4])
