#!/usr/bin/env bash
# DPO on the demo task (README "Preference finetuning"): LoRA on examples/base, 64 pairs from
# examples/demo/preference.jsonl (chosen: the correct JSON record, rejected: one field corrupted),
# then TRL's reward metrics from metrics.jsonl. Usage: scripts/dpo-demo.sh [BUILD_DIR] [OUT_DIR] [STEPS]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
OUT=${2:-$BUILD/dpo-demo}
STEPS=${3:-40}
"$BUILD/vktune" train --model examples/base --data examples/demo/preference.jsonl --output-dir "$OUT" \
  --overwrite-output-dir --objective dpo --beta 0.1 --loss-type sigmoid --method lora --lora-r 16 --lora-alpha 32 \
  --target-modules all-linear --per-device-train-batch-size 4 --max-steps "$STEPS" --learning-rate 5e-3 \
  --logging-steps 5 --save-steps 0 --max-length 128 --seed 1 --headless
python3 - "$OUT/metrics.jsonl" <<'PY'
import json, sys
print("step  loss    rewards/accuracies  rewards/margins  rewards/chosen  rewards/rejected  step_time_s")
for line in open(sys.argv[1]):
    m = json.loads(line)
    if "rewards/accuracies" in m:
        print(f"{m['step']:4d}  {m['loss']:.4f}  {m['rewards/accuracies']:18.2f}  {m['rewards/margins']:15.3f}  "
              f"{m['rewards/chosen']:14.3f}  {m['rewards/rejected']:16.3f}  {m['step_time_s']:11.1f}")
PY
