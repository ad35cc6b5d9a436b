#!/usr/bin/env bash
# fp32 vs bf16 vs fp16 training steps of the ~10M-parameter Llama (bench/configs/llama-10m.json, the
# model of bench/train_throughput.sh): LoRA r=16 on all linear layers with --bf16 / --fp16 (16-bit
# activations), and full finetuning in fp32, --bf16 (bf16 weights + fp32 masters) and --pure-bf16.
# Prints tokens/s of the last logged window (steady state) and the ledger's bytes per category at
# that step (buffers are allocated once, so these are the peaks): activations, weights, fp32
# master weights, gradients, optimizer states. The same script runs on a GPU (VKTUNE=... and a
# device that vktune picks). Usage: bench/precision_throughput.sh [WORK_DIR]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
work="${1:-$root/build/bench-precision}" vktune="${VKTUNE:-$root/build/vktune}" steps="${STEPS:-8}"
[ -f "$root/examples/base/tokenizer.json" ] || { echo "needs examples/base/tokenizer.json" >&2; exit 1; }
mkdir -p "$work"
[ -f "$work/model/model.safetensors" ] ||  # the same model as bench/train_throughput.sh's (same config and seed)
  "$vktune" new-model --config "$root/bench/configs/llama-10m.json" --tokenizer "$root/examples/base" \
    --output "$work/model" --seed 1 >/dev/null
# Any text will do for throughput: 8 x 128-token packed rows per step.
[ -f "$work/data.jsonl" ] || python3 -c '
import json, random
random.seed(1)
words = "the of and to in is was for on that with as by at from his her it an be this which".split()
for _ in range(2000):
    print(json.dumps({"text": " ".join(random.choice(words) for _ in range(60))}))' > "$work/data.jsonl"
printf "%-22s %9s %12s %10s %10s %10s %10s %8s\n" "run (batch 8 x 128)" "tokens/s" "activations" "weights" \
  "masters" "gradients" "states" "loss"
row() {  # label, flags...
  local label="$1"
  shift
  "$vktune" train --model "$work/model" --data "$work/data.jsonl" --output-dir "$work/out" --overwrite-output-dir \
    --packing --max-length 128 --per-device-train-batch-size 8 --learning-rate 1e-4 --max-steps "$steps" \
    --logging-steps $((steps / 2)) --save-steps 0 --headless "$@" >"$work/log.txt" 2>&1 ||
    { echo "$label: failed (see $work/log.txt)" >&2; return 1; }
  python3 - "$work/out/metrics.jsonl" "$label" <<'PY'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1]) if '"loss"' in line]
last = rows[-1]
m = last["memory"]
mib = lambda b: "%.1f MiB" % (b / 1048576)
print("%-22s %9.0f %12s %10s %10s %10s %10s %8.3f" % (
    sys.argv[2], last["tokens_per_sec"], mib(m["activations"]), mib(m["base_weights"] + m["adapter_params"]),
    mib(m.get("master_weights", 0)), mib(m["gradients"]), mib(m["optimizer_state"]), last["loss"]))
PY
}
lora=(--method lora --lora-r 16 --target-modules all-linear)
row "LoRA fp32" "${lora[@]}"
row "LoRA --bf16" "${lora[@]}" --bf16
row "LoRA --fp16" "${lora[@]}" --fp16
row "full fp32" --method full
row "full --bf16" --method full --bf16
row "full --fp16" --method full --fp16
row "full --pure-bf16" --method full --bf16 --pure-bf16
