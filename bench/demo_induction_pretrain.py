"""A PyTorch stand-in of examples/recipes/pretrain-kjv-induction.yaml (issue 20): does continued pretraining of
examples/base on rows that reward copying form an induction head, and when? Full finetuning, AdamW (weight decay
0.1, betas 0.9/0.99), clipping 1.0, batch 16 x 128, 50 warmup steps then a constant rate. Half the rows are runs of
KJV verses, half random ITEMS each followed by itself ("a b c\na b c\n..."): ITEMS `words` draws single-token
words of the base's BPE; `mixed` draws such words 60%, numbers 1-176 20%, references like "Lev3:12" 20%, as
examples/make_induction_rows.py does. Every 250 steps it prints the mean training loss and the copy probe: top-1
on the second copy of 30 random sequences each of words, numbers and references (a model that copies gets ~100%;
`probe` mode prints it for saved models). Saves OUTPUT_DIR every 500 steps. The README's numbers were measured
with an earlier form of this script that probed only at the saves (same rows, model, optimizer and seeds).
Pinned: torch 2.15.0 (CPU), transformers 5.23.0, tokenizers 0.23.3; `bible` from Debian's bible-kjv.
  python bench/demo_induction_pretrain.py STEPS LR words|mixed OUTPUT_DIR
  python bench/demo_induction_pretrain.py probe MODEL_DIR...
"""
import os, random, subprocess, sys, time
import torch
from tokenizers import Tokenizer
from transformers import AutoModelForCausalLM

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASE = os.path.join(ROOT, "examples", "base")
torch.manual_seed(1); random.seed(1); torch.set_num_threads(2)
tok = Tokenizer.from_file(os.path.join(BASE, "tokenizer.json"))
encode = lambda s: tok.encode(s, add_special_tokens=False).ids
lines = subprocess.run(["bible", "-f", "Gen1:1-Rev22:21"], capture_output=True, text=True, check=True).stdout.splitlines()
train = [l for i, l in enumerate(lines) if i % 20 != 19]  # every 20th verse is validation (make_corpus.sh)
pieces = [tok.decode([i]) for i in range(tok.get_vocab_size())]
words = [p[1:] for p in pieces if p.startswith(" ") and p[1:].isalpha() and len(p) > 2]  # single-token words
books = sorted({l.split()[0].rstrip("0123456789:") for l in lines if l.strip()})
BOS, BATCH, LENGTH = 2045, 16, 128


def item(kind, rng):
    u = rng.random() if kind == "mixed" else 0
    if u < 0.6: return rng.choice(words)
    if u < 0.8: return str(rng.randint(1, 176))
    return f"{rng.choice(books)}{rng.randint(1, 50)}:{rng.randint(1, 80)}"


def copy_top1(model, kind, rng):
    hit = count = 0
    for _ in range(30):
        if kind == "words": x = " ".join(rng.choice(words) for _ in range(10))
        elif kind == "numbers": x = " ".join(str(rng.randint(1, 150)) for _ in range(8))
        else: x = " ".join(f"{rng.choice(books[:6])}{rng.randint(1, 50)}:{rng.randint(1, 40)}" for _ in range(4))
        once = encode(x + "\n"); ids = torch.tensor([[BOS] + once + once]); n = len(once)  # [1, 1 + 2n]
        with torch.no_grad(): predicted = model(input_ids=ids).logits[0, :-1].argmax(-1)
        target = ids[0, n + 2:]  # the second copy after its first token
        hit += (predicted[n + 1:n + 1 + len(target)] == target).sum().item(); count += len(target)
    return hit / count


if sys.argv[1] == "probe":
    for path in sys.argv[2:]:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
        print(path, " ".join(f"{k} {copy_top1(model, k, random.Random(5)):.0%}" for k in ("words", "numbers", "refs")))
    sys.exit(0)

steps, lr, kind, out = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3], sys.argv[4]
model = AutoModelForCausalLM.from_pretrained(BASE, dtype=torch.float32)


def row():
    ids = [BOS]
    if random.random() < 0.5:
        while len(ids) < LENGTH:
            x = " ".join(item(kind, random) for _ in range(random.randint(4, 16)))
            ids += encode(x + "\n" + x + "\n")
    else:
        while len(ids) < LENGTH: ids += encode(random.choice(train) + "\n")
    return ids[:LENGTH]


def probe():
    return " ".join(f"{k} {copy_top1(model, k, random.Random(5)):.0%}" for k in ("words", "numbers", "refs"))


model.eval(); print("step 0", probe(), flush=True); model.train()
opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.1, betas=(0.9, 0.99))
t0, total = time.time(), 0.0
for s in range(1, steps + 1):
    for group in opt.param_groups: group["lr"] = lr * min(1, s / 50)
    ids = torch.tensor([row() for _ in range(BATCH)])  # [16, 128]
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward(); total += loss.item()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0); opt.step(); opt.zero_grad()
    if s % 250 == 0:
        model.eval()
        print(f"step {s} tokens {s * BATCH * LENGTH} loss {total / 250:.3f} {time.time() - t0:.0f}s", probe(), flush=True)
        model.train(); total = 0.0
    if s % 500 == 0: model.save_pretrained(out)
