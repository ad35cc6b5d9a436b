#!/usr/bin/env bash
# Knowledge distillation vs cross-entropy alone (issue 22's done-when; results in bench/distill.md):
# a fresh random 2-layer student (hidden 128, bench/configs/distill-student.json, examples/base's
# tokenizer) is trained twice from the same initialisation, on the same 2000 KJV verses, with the same
# schedule and seed:
#   ce       --objective sft (cross-entropy on the data alone)
#   distill  --objective distill --teacher examples/base (4 layers, hidden 256, pretrained on all of KJV)
#            --distill-temperature 2 --distill-alpha 0.5
# and both are scored by `vktune evaluate --loss` (plain CE) on 200 held-out verses the base never trained on
# (kjv-valid, as examples/make_corpus.sh splits it).
# Sized for a loaded 2-core lavapipe machine (~70 tokens/s): packed rows of 64 tokens, 4 per step.
# Usage: bench/distill.sh [WORK_DIR] [STEPS]   (needs the bible-kjv package for the corpus)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
work="${1:-$root/build/distill-bench}"
steps="${2:-60}"
vktune="${VKTUNE:-$root/build/vktune}"
mkdir -p "$work"
[ -f "$work/corpus/kjv-train.jsonl" ] || "$root/examples/make_corpus.sh" "$work/corpus"
head -n 2000 "$work/corpus/kjv-train.jsonl" > "$work/train.jsonl"
head -n 200 "$work/corpus/kjv-valid.jsonl" > "$work/heldout.jsonl"
[ -f "$work/student/model.safetensors" ] || "$vktune" new-model --config "$root/bench/configs/distill-student.json" \
  --tokenizer "$root/examples/base" --output "$work/student" --seed 1
common=(--model "$work/student" --data "$work/train.jsonl" --method full --packing --max-length 64
        --per-device-train-batch-size 4 --max-steps "$steps" --learning-rate 3e-3 --lr-scheduler-type cosine
        --warmup-steps 0.05 --weight-decay 0.1 --logging-steps 5 --save-steps 0 --seed 1 --headless
        --overwrite-output-dir)
"$vktune" train "${common[@]}" --output-dir "$work/ce" 2>&1 | tail -3
"$vktune" train "${common[@]}" --output-dir "$work/distill" --objective distill --teacher "$root/examples/base" \
  --distill-temperature 2 --distill-alpha 0.5 2>&1 | tail -3
for run in ce distill; do
  printf '%s held-out CE: ' "$run"
  "$vktune" evaluate --loss --json --model "$work/$run" --data "$work/heldout.jsonl" | tail -1
done
printf 'teacher (examples/base) held-out CE: '
"$vktune" evaluate --loss --json --model "$root/examples/base" --data "$work/heldout.jsonl" | tail -1
