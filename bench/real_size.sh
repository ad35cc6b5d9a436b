#!/usr/bin/env bash
# Real-size QLoRA on lavapipe: random-init models with the full published shapes of Qwen2.5-0.5B
# (bench/configs/qwen2.5-0.5b.json) and Llama-3.2-1B (bench/configs/llama-3.2-1b.json, rope llama3
# scaling), written by `vktune new-model` (fp32 safetensors: 2.0 GB and 4.9 GB), then 3 QLoRA steps
# each (NF4 + double quant base, bf16 embeddings, r 16 on all linear layers, batch 1 x 512 packed
# tokens, gradient checkpointing). Prints, per model: file size, new-model time, load time (the
# trainer's load bar: mmap'ed safetensors -> NF4 on the device), step times, peak RSS of the train
# process (/usr/bin/time -v) and `vktune plan`'s total vs the ledger's measured peak.
# The tokenizer is examples/base's (2048 tokens; ids stay below either vocab).
# Usage: bench/real_size.sh [WORK_DIR] [MODEL...]   (MODEL: qwen2.5-0.5b llama-3.2-1b; default both)
# On a shared machine run it niced: nice -n 10 bench/real_size.sh
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
work="${1:-$(mktemp -d /tmp/vktune-real-size.XXXXXX)}"
shift || true
models=("$@")
[ ${#models[@]} -gt 0 ] || models=(qwen2.5-0.5b llama-3.2-1b)
vktune="${VKTUNE:-$root/build/vktune}"
steps="${STEPS:-3}"
mkdir -p "$work"
# Packed text: every step sees one full 512-token row.
[ -f "$work/data.jsonl" ] || /usr/bin/python3 -c '
import json, sys
for line in open(sys.argv[1]):
    example = json.loads(line)
    print(json.dumps({"text": example["prompt"] + " " + example["completion"]}))' \
  "$root/examples/demo/train.jsonl" > "$work/data.jsonl"
flags=(--method qlora --dtype bf16 --lora-r 16 --target-modules all-linear --per-device-train-batch-size 1
       --max-length 512 --packing --gradient-checkpointing)
echo "work dir: $work; load average: $(cut -d' ' -f1-3 /proc/loadavg)"
for name in "${models[@]}"; do
  model="$work/$name"
  if [ ! -f "$model/model.safetensors" ]; then
    start=$(date +%s.%N)
    /usr/bin/time -v -o "$work/$name.new-model.time" "$vktune" new-model --config "$root/bench/configs/$name.json" \
      --tokenizer "$root/examples/base" --output "$model" --seed 1 >/dev/null
    echo "$name: new-model $(awk "BEGIN { printf \"%.1f\", $(date +%s.%N) - $start }")s," \
      "peak RSS $(awk '/Maximum resident/ { printf "%.2f GiB", $6 / 1048576 }' "$work/$name.new-model.time")"
  fi
  planned=$("$vktune" plan --model "$model" "${flags[@]}" --json 2>/dev/null |
    /usr/bin/python3 -c 'import json, sys; r = json.load(sys.stdin); print(r["device_total"])')
  rm -rf "$work/$name-out"
  start=$(date +%s.%N)
  status=0
  /usr/bin/time -v -o "$work/$name.train.time" "$vktune" train --model "$model" --data "$work/data.jsonl" \
    --output-dir "$work/$name-out" "${flags[@]}" --max-steps "$steps" --logging-steps 1 --save-steps 0 --headless \
    > "$work/$name.train.out" 2> "$work/$name.train.err" || status=$?
  wall=$(awk "BEGIN { printf \"%.0f\", $(date +%s.%N) - $start }")
  if [ "$status" != 0 ]; then
    echo "$name: train failed (exit $status); last lines of $work/$name.train.err:"
    tail -n 8 "$work/$name.train.err"
    continue
  fi
  /usr/bin/python3 - "$name" "$model" "$work" "$planned" "$wall" <<'EOF'
import json, os, re, sys
name, model, work, planned, wall = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
size = sum(os.path.getsize(os.path.join(model, f)) for f in os.listdir(model) if f.endswith(".safetensors"))
rss = next(int(l.split()[-1]) for l in open(f"{work}/{name}.train.time") if "Maximum resident" in l) / 1048576
err = open(f"{work}/{name}.train.err", errors="replace").read()
loads = re.findall(r"load \[#+\] \S+ +100% ([0-9.hms]+)<", err)
steps = [json.loads(l) for l in open(f"{work}/{name}-out/metrics.jsonl") if '"loss"' in l]
times = " ".join(f"{s['step_time_s']:.1f}s" for s in steps)
losses = " ".join(f"{s['loss']:.3f}" for s in steps)
measured = max(sum(v for k, v in s["memory"].items() if k != "optimizer_state_offload") for s in steps)
out = open(f"{work}/{name}.train.out").read()
table = out[out.find("memory, planned vs measured"):out.find("output:")].rstrip()
print(f"{name}: safetensors {size / 2**30:.2f} GiB, load {loads[-1] if loads else '?'}, steps {times} (loss {losses}),"
      f" train wall {wall}s, peak RSS {rss:.2f} GiB")
print(f"{name}: vktune plan total {planned / 2**20:.1f} MiB, ledger peak {measured / 2**20:.1f} MiB"
      f" ({100 * (planned / measured - 1):+.1f}%)")
print(table)
EOF
done
