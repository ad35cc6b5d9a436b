#!/usr/bin/env python3
"""Golden pruning masks for tests/test_merge_prune.cpp, with the selection code of Wanda's
reference implementation (locuslab/wanda, lib/prune.py: prune_wanda and its 2:4 branch).

A (16, 32) weight W and (24, 32) calibration inputs X (rows: tokens; columns scaled so that the
activation norms differ by 10x, which makes wanda's mask differ from magnitude's). Writes
tests/data/prune/prune_golden.json with W, X and the masks (1 = kept):
  wanda       W_metric = |W| * sqrt(scaler_row) (scaler_row = ||X_j||^2 / nsamples), per output row
              the int(cols * 0.5) lowest by torch.sort(stable=True)
  wanda_2_4   the same metric; in every 4 consecutive columns the 2 lowest (torch.topk largest=False)
  magnitude_2_4  |W| in the 2:4 groups
  magnitude   |W| over the whole tensor: the int(numel * 0.5) lowest (Wanda's own magnitude baseline
              prunes numel*s + 1 through `<= thresh`; vktune prunes exactly numel*s)
Run: /work/venv/bin/python tests/reference/prune_golden.py   (--verify compares instead)
"""
import json
import os
import sys

import torch
from golden_io import write_or_verify_text

PINNED = {"torch": "2.15.0"}
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "prune", "prune_golden.json")
SPARSITY = 0.5


def wanda_metric(weight, inputs):
    scaler_row = torch.zeros(weight.shape[1])
    nsamples = 0
    for sample in inputs.split(8):  # add_batch, one calibration sample of 8 tokens at a time
        tmp = 1
        scaler_row *= nsamples / (nsamples + tmp)
        nsamples += tmp
        inp = sample.t().type(torch.float32)  # (in, tokens)
        scaler_row += torch.norm(inp, p=2, dim=1) ** 2 / nsamples
    return torch.abs(weight) * torch.sqrt(scaler_row.reshape((1, -1)))


def unstructured(metric):
    prune = torch.zeros_like(metric) == 1
    indices = torch.sort(metric, dim=-1, stable=True)[1][:, :int(metric.shape[1] * SPARSITY)]
    prune.scatter_(1, indices, True)
    return prune


def two_four(metric):
    prune = torch.zeros_like(metric) == 1
    for ii in range(metric.shape[1]):
        if ii % 4 == 0:
            tmp = metric[:, ii:(ii + 4)].float()
            prune.scatter_(1, ii + torch.topk(tmp, 2, dim=1, largest=False)[1], True)
    return prune


def magnitude(weight):
    flat = torch.abs(weight).flatten()
    prune = torch.zeros_like(flat) == 1
    prune[torch.sort(flat, stable=True)[1][:int(flat.numel() * SPARSITY)]] = True
    return prune.reshape(weight.shape)


def kept(prune):
    return (~prune).to(torch.int64).flatten().tolist()


def main():
    found = {"torch": torch.__version__.split("+")[0]}
    if found != PINNED:
        sys.exit("prune_golden.py is pinned to %s, found %s" % (PINNED, found))
    g = torch.Generator().manual_seed(22)
    weight = torch.randn(16, 32, generator=g)
    inputs = torch.randn(24, 32, generator=g) * torch.logspace(-0.5, 0.5, 32)[torch.randperm(32, generator=g)]
    metric = wanda_metric(weight, inputs)
    masks = {"wanda": unstructured(metric), "wanda_2_4": two_four(metric), "magnitude_2_4": two_four(torch.abs(weight)),
             "magnitude": magnitude(weight)}
    assert not torch.equal(masks["wanda"], unstructured(torch.abs(weight))), "wanda must differ from |W| per row"
    document = {"versions": PINNED, "sparsity": SPARSITY, "rows": 16, "cols": 32,
                "weight": weight.flatten().tolist(), "inputs": inputs.flatten().tolist(),
                "masks": {name: kept(mask) for name, mask in masks.items()}}
    text = json.dumps(document) + "\n"
    write_or_verify_text(OUT, text, "--verify" in sys.argv)


if __name__ == "__main__":
    main()
