#!/usr/bin/env bash
# A/B of a kernel switch on whole LoRA training steps on lavapipe: the process CPU seconds of one
# step (CPU time of a run of 1 + EXTRA steps minus a run of 1 step, over EXTRA; load, pipeline
# compiles and the first step cancel), alternating switch on/off, ROUNDS times; prints each
# measurement and the medians. CPU time, not wall: the machine is shared, and on a CPU driver the
# work is what the process spends.
# Models (written once by `vktune new-model`): qwen-tiny-2layers (hidden 64, MLP 256) and
# qwen2.5-0.5b-2layers (Qwen2.5-0.5B's layer shapes: hidden 896, MLP 4864, 14/2 heads; 2 layers,
# vocab 2048), bench/configs/. examples/demo's prompt/completion pairs, packed; LoRA r 16 on all linear layers, fp32, batch 1 x 512 packed tokens (tiny: 64).
# Usage: bench/fusions.sh [WORK_DIR] [SWITCH] [MODEL...]
#   SWITCH: the env kill switch, default VKT_DISABLE_FUSED_SWIGLU (also VKT_DISABLE_FUSED_LORA_A,
#   VKT_DISABLE_MATMUL_NN_SPLIT)
#   ROUNDS (default 3), EXTRA (default 2), FLAGS (extra train flags, e.g. "--method qlora --dtype bf16")
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
work="${1:-$(mktemp -d /tmp/vktune-fusions.XXXXXX)}"
switch="${2:-VKT_DISABLE_FUSED_SWIGLU}"
shift 2 || shift $# || true
models=("$@")
[ ${#models[@]} -gt 0 ] || models=(qwen-tiny-2layers qwen2.5-0.5b-2layers)
vktune="${VKTUNE:-$root/build/vktune}"
rounds="${ROUNDS:-3}"
extra="${EXTRA:-2}"
mkdir -p "$work"
echo "work dir: $work; switch: $switch; load average: $(cut -d' ' -f1-3 /proc/loadavg)"
# CPU seconds (user + sys) of one training run: $1 model, $2 steps, $3 switch value.
cpu_seconds() {
  local length=512
  [[ "$1" == *tiny* ]] && length=64
  rm -rf "$work/out"
  env "$switch=$3" /usr/bin/time -f "%U %S" -o "$work/time" "$vktune" train --model "$work/$1" \
    --data "$root/examples/demo/train.jsonl" --output-dir "$work/out" --lora-r 16 --target-modules all-linear \
    --per-device-train-batch-size 1 --max-length "$length" --packing --max-steps "$2" --save-steps 0 --headless \
    ${FLAGS:-} > "$work/train.out" 2>&1 || { tail -n 5 "$work/train.out"; exit 1; }
  awk '{ print $1 + $2 }' "$work/time"
}
for name in "${models[@]}"; do
  [ -f "$work/$name/model.safetensors" ] || "$vktune" new-model --config "$root/bench/configs/$name.json" \
    --tokenizer "$root/examples/base" --output "$work/$name" --seed 1 > /dev/null
  # Warm-up, both ways: the first run compiles and caches the pipelines (~/.cache), later runs reuse them.
  cpu_seconds "$name" 1 0 > /dev/null
  cpu_seconds "$name" 1 1 > /dev/null
  on=() off=()
  for round in $(seq "$rounds"); do
    for value in 0 1; do
      one=$(cpu_seconds "$name" 1 "$value")
      more=$(cpu_seconds "$name" $((1 + extra)) "$value")
      step=$(awk "BEGIN { printf \"%.3f\", ($more - $one) / $extra }")
      echo "$name round $round $switch=$value: $step cpu s/step (runs: $one s, $more s)"
      if [ "$value" = 0 ]; then on+=("$step"); else off+=("$step"); fi
    done
  done
  median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
  echo "$name: median cpu s/step: $switch=0 $(median "${on[@]}"), $switch=1 $(median "${off[@]}")"
done
