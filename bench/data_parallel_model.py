#!/usr/bin/env python3
"""Where data parallelism stops scaling: time per optimizer step of `mpirun -np N vktune train`.

vktune sums each step's fp32 gradients (4 bytes per trainable parameter) over the ranks after backward,
staged through host memory and not overlapped with compute (engine/train/step_runner.cpp):

  t_step(N) = t_compute + t_stage + t_allreduce
  t_compute  = flops_per_token * tokens_per_rank / achieved_flops   (the same on every rank)
  t_stage    = 2 * grad_bytes / pcie_bandwidth                        (download + upload)
  t_allreduce= 2 * (N - 1) / N * grad_bytes / link_bandwidth          (ring all-reduce, bandwidth term)

Efficiency = t_compute / t_step. Plain Python, no dependencies; edit the cases below for your hardware.
"""


def lora_trainable(hidden, intermediate, kv, layers, r):
    """LoRA on all seven linear modules: r * (in + out) per module."""
    per_layer = r * ((hidden + hidden) * 2 + (hidden + kv) * 2 + (hidden + intermediate) * 3)
    return per_layer * layers


def step_seconds(trainable, base_params, tokens_per_rank, ranks, link_gbs, pcie_gbs, tflops, full):
    grad_bytes = 4 * trainable
    # forward 2 flop/param/token; backward 2 (input gradients) + 2 more for weight gradients in full finetuning
    flops = (6 if full else 4) * base_params * tokens_per_rank
    compute = flops / (tflops * 1e12)
    stage = 2 * grad_bytes / (pcie_gbs * 1e9)
    allreduce = 2 * (ranks - 1) / ranks * grad_bytes / (link_gbs * 1e9) if ranks > 1 else 0.0
    return compute, stage, allreduce, grad_bytes


def main():
    llama8b = dict(hidden=4096, intermediate=14336, kv=1024, layers=32)
    base = 8.03e9
    tokens = 4 * 2048  # per-device batch 4 x 2048 tokens
    cases = [
        # name, trainable parameters, full finetuning, ranks, link GB/s, PCIe GB/s
        ("8B LoRA r16, 8 GPUs, PCIe 4.0 (shared memory)", lora_trainable(r=16, **llama8b), False, 8, 20.0, 25.0),
        ("8B LoRA r16, 2 nodes, 100 Gb/s", lora_trainable(r=16, **llama8b), False, 2, 12.5, 25.0),
        ("8B full, 8 GPUs, PCIe 4.0 (shared memory)", base, True, 8, 20.0, 25.0),
        ("8B full, 2 nodes, 100 Gb/s", base, True, 2, 12.5, 25.0),
        ("8B full, 16 nodes, 100 Gb/s", base, True, 16, 12.5, 25.0),
    ]
    tflops = 30.0  # achieved by the matmuls of one GPU (assumption: a mid-range card through Vulkan)
    print(f"assumptions: {tokens} tokens per rank per step, {tflops:.0f} TFLOP/s achieved per GPU")
    print(f"{'case':48} {'grad MB':>8} {'compute s':>9} {'stage s':>8} {'allred s':>8} {'efficiency':>10}")
    for name, trainable, full, ranks, link, pcie in cases:
        compute, stage, allreduce, grad_bytes = step_seconds(trainable, base, tokens, ranks, link, pcie, tflops, full)
        total = compute + stage + allreduce
        print(f"{name:48} {grad_bytes / 1e6:8.0f} {compute:9.2f} {stage:8.3f} {allreduce:8.3f} {compute / total:10.1%}")


if __name__ == "__main__":
    main()
