#!/usr/bin/python3
"""The peer for bench/train_throughput.sh: the same LoRA training step in PyTorch (CPU, fp32,
HF/PEFT semantics from tests/reference/model.py) on the same model folder, printing tokens/s.
Usage: torch_lora_peer.py MODEL_DIR --rank 16 --batch 8 --seq 128 --steps 12 [--threads 2]"""
import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "reference"))
import golden_io  # noqa: E402
import model as reference  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("model")
parser.add_argument("--rank", type=int, default=16)
parser.add_argument("--batch", type=int, default=8)
parser.add_argument("--seq", type=int, default=128)
parser.add_argument("--steps", type=int, default=12)
parser.add_argument("--threads", type=int, default=2)
args = parser.parse_args()
torch.set_num_threads(args.threads)
torch.manual_seed(0)

cfg = reference.Config(json.load(open(os.path.join(args.model, "config.json"))))
weights = {k: torch.tensor(v) for k, v in golden_io.read_safetensors(os.path.join(args.model, "model.safetensors"))[0].items()}
lora = {}
for i in range(cfg.layers):
    for module, (out, inp) in cfg.linear_shapes().items():
        prefix = "base_model.model.model.layers.%d.%s" % (i, module)
        lora[prefix + ".lora_A.weight"] = (torch.rand(args.rank, inp) * 2 - 1).div(inp ** 0.5).requires_grad_(True)
        lora[prefix + ".lora_B.weight"] = torch.zeros(out, args.rank, requires_grad=True)
optimizer = torch.optim.AdamW(lora.values(), lr=1e-4)
ids = torch.randint(0, cfg.vocab, (args.batch, args.seq))
positions = torch.arange(args.seq).expand(args.batch, args.seq)
token_weights = torch.ones(args.batch, args.seq)
times = []
for step in range(args.steps):
    start = time.perf_counter()
    logits, _ = reference.forward(cfg, weights, ids, positions, lora, 2.0)
    loss_sum, weight_sum = reference.weighted_loss_sum(logits, ids, token_weights)
    (loss_sum / weight_sum).backward()
    torch.nn.utils.clip_grad_norm_(lora.values(), 1.0)
    optimizer.step()
    optimizer.zero_grad()
    times.append(time.perf_counter() - start)
steady = sorted(times[2:])[len(times[2:]) // 2]  # median after 2 warm-up steps
print(json.dumps({"tokens_per_sec": args.batch * args.seq / steady, "step_s": steady}))
