#!/usr/bin/env python3
"""The PyTorch + PEFT peer of bench/gpu.sh: the same LoRA / QLoRA training step as `vktune train` on the
same model folder and the same packed tokens, with Hugging Face's own code (LlamaForCausalLM + PEFT LoRA on
all linear layers, AdamW, clipping 1.0), under bf16 autocast. Prints one JSON line per method:
{"method", "device", "tokens_per_sec", "step_s", "peak_bytes", "peak_kind", "losses"}.

peak_bytes is torch.cuda.max_memory_allocated() on CUDA ("device"), the process's peak RSS on the CPU
("host_rss", not comparable with vktune's device ledger). QLoRA needs bitsandbytes with CUDA; elsewhere the
method is reported as skipped.
Written against torch 2.x, transformers 5.23, peft 0.21 (what /work/venv pins); it uses only stable APIs.
Usage: peft_peer.py MODEL_DIR DATA.jsonl --batch 4 --seq 1024 --rank 16 --alpha 32 --steps 6 [--methods lora,qlora]
"""
import argparse
import json
import resource
import sys
import time

import torch

parser = argparse.ArgumentParser()
parser.add_argument("model")
parser.add_argument("data", help="JSONL with a 'text' field, packed as vktune --packing does (EOS between texts)")
parser.add_argument("--batch", type=int, default=4)
parser.add_argument("--seq", type=int, default=1024)
parser.add_argument("--rank", type=int, default=16)
parser.add_argument("--alpha", type=float, default=32)
parser.add_argument("--steps", type=int, default=6)
parser.add_argument("--lr", type=float, default=1e-4)
parser.add_argument("--methods", default="lora,qlora")
parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
args = parser.parse_args()

import peft  # noqa: E402
import tokenizers  # noqa: E402
import transformers  # noqa: E402

if args.threads:
    torch.set_num_threads(args.threads)
device = "cuda" if torch.cuda.is_available() else "cpu"


def packed_batches():
    """batch x seq token rows from the data, texts joined by EOS, repeated when the data runs out."""
    tokenizer = tokenizers.Tokenizer.from_file(args.model + "/tokenizer.json")
    config = json.load(open(args.model + "/config.json"))
    eos = config.get("eos_token_id", 0)
    eos = eos[0] if isinstance(eos, list) else eos
    stream = []
    for line in open(args.data):
        stream += tokenizer.encode(json.loads(line)["text"]).ids + [eos]
    need = args.batch * args.seq * args.steps
    while len(stream) < need:
        stream += stream
    rows = torch.tensor(stream[:need]).view(args.steps, args.batch, args.seq)
    return [rows[s] for s in range(args.steps)]


def peak_bytes():
    if device == "cuda":
        return torch.cuda.max_memory_allocated(), "device"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "host_rss"


def run(method):
    torch.manual_seed(0)
    kwargs = {"dtype": torch.bfloat16}
    if method == "qlora":
        if device != "cuda":
            return {"method": method, "skipped": "QLoRA (bitsandbytes 4-bit) needs CUDA"}
        kwargs["quantization_config"] = transformers.BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16)
    model = transformers.AutoModelForCausalLM.from_pretrained(args.model, **kwargs).to(device) if method == "lora" \
        else transformers.AutoModelForCausalLM.from_pretrained(args.model, device_map={"": 0}, **kwargs)
    model.config.use_cache = False
    lora = peft.LoraConfig(r=args.rank, lora_alpha=args.alpha, lora_dropout=0.0, target_modules="all-linear",
                           task_type="CAUSAL_LM")
    model = peft.get_peft_model(model, lora)
    for param in model.parameters():  # fp32 master LoRA weights, as vktune keeps them
        if param.requires_grad:
            param.data = param.data.float()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=args.lr)
    batches = packed_batches()
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times, losses = [], []
    for ids in batches:
        ids = ids.to(device)
        start = time.perf_counter()
        with torch.autocast(device_type=device, dtype=torch.bfloat16):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
        losses.append(round(loss.item(), 4))
    steady = times[2:] if len(times) > 2 else times  # the first steps warm up kernels and allocators
    step_s = sorted(steady)[len(steady) // 2]
    peak, kind = peak_bytes()
    del model, optimizer
    if device == "cuda":
        torch.cuda.empty_cache()
    return {"method": method, "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
            "tokens_per_sec": args.batch * args.seq / step_s, "step_s": step_s, "peak_bytes": peak,
            "peak_kind": kind, "losses": losses}


for method in args.methods.split(","):
    print(json.dumps(run(method)), flush=True)
sys.exit(0)
