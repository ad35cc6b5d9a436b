#!/usr/bin/env bash
# Training throughput of vktune (LoRA and QLoRA, r=16 on all linear layers) on a ~10M-parameter
# Llama (bench/configs/llama-10m.json), against PyTorch CPU running the same LoRA step on the same
# model in the same run (bench/torch_lora_peer.py; needs Debian's python3-torch, and libopenblas0-pthread:
# with Debian's default reference BLAS PyTorch multiplies at ~6 GFLOP/s instead of ~100). Prints tokens/s
# and the ratio vktune / PyTorch. Usage: bench/train_throughput.sh [WORK_DIR]; PYTHON picks the peer's
# interpreter (default /usr/bin/python3; e.g. a venv with PyPI's torch).
set -euo pipefail
update-alternatives --query libblas.so.3-x86_64-linux-gnu 2>/dev/null | grep -q "^Value: .*openblas" ||
  echo "note: libblas.so.3 is not OpenBLAS; the PyTorch peer will be ~15x slower than it should (apt-get install libopenblas0-pthread)" >&2
root="$(cd "$(dirname "$0")/.." && pwd)"
work="${1:-$root/build/bench-train}"
vktune="${VKTUNE:-$root/build/vktune}"
steps="${STEPS:-12}"
mkdir -p "$work"
tokenizer="$root/examples/base"
[ -f "$tokenizer/tokenizer.json" ] || { echo "needs examples/base/tokenizer.json" >&2; exit 1; }
[ -f "$work/model/model.safetensors" ] || "$vktune" new-model --config "$root/bench/configs/llama-10m.json" \
  --tokenizer "$tokenizer" --output "$work/model" --seed 1 >/dev/null
# Random text is enough for throughput: 8 x 128-token packed rows per step.
[ -f "$work/data.jsonl" ] || awk 'NR <= 4000 { print "{\"text\": \"" $0 "\"}" }' \
  <(bible -f Gen1:1-Rev22:21 | sed 's/"/\\"/g') > "$work/data.jsonl"
run() {  # method -> tokens/s of the last logged window (steady state)
  "$vktune" train --model "$work/model" --data "$work/data.jsonl" --output-dir "$work/out-$1" --overwrite-output-dir --method "$1" \
    --lora-r 16 --target-modules all-linear --packing --max-length 128 --per-device-train-batch-size 8 \
    --max-steps "$steps" --logging-steps $((steps / 2)) --save-steps 0 --headless >/dev/null 2>&1
  tail -n 3 "$work/out-$1/metrics.jsonl" | grep '"loss"' | tail -1 | sed 's/.*"tokens_per_sec":\([0-9.]*\).*/\1/'
}
lora=$(run lora)
qlora=$(run qlora)
python="${PYTHON:-/usr/bin/python3}"
torch=$("$python" "$root/bench/torch_lora_peer.py" "$work/model" --rank 16 --batch 8 --seq 128 --steps "$steps" \
  | sed 's/.*"tokens_per_sec": \([0-9.]*\).*/\1/')
params=$("$vktune" plan --model "$work/model" --max-length 128 --json 2>/dev/null |
  /usr/bin/python3 -c 'import json, sys; print(json.load(sys.stdin)["parameters"]["total"])')
printf "model: %s parameters (bench/configs/llama-10m.json), batch 8 x 128 tokens, LoRA r=16 on all linear layers\n" "$params"
printf "%-26s %12s %10s\n" "trainer" "tokens/s" "vs torch"
printf "%-26s %12.0f %10.2f\n" "vktune LoRA (fp32 base)" "$lora" "$(awk "BEGIN { print $lora / $torch }")"
printf "%-26s %12.0f %10.2f\n" "vktune QLoRA (NF4 + DQ)" "$qlora" "$(awk "BEGIN { print $qlora / $torch }")"
printf "%-26s %12.0f %10.2f\n" "PyTorch CPU LoRA (fp32)" "$torch" 1
