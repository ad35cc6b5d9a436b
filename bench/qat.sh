#!/usr/bin/env bash
# PTQ vs QAT on the bundled base model (issue 17 item 5; bench/qat.md). Continued pretraining of
# examples/base (--method full) on its own corpus (examples/make_corpus.sh: KJV verses, every 20th
# held out) for STEPS steps, once plain and once with --qat F for each format F; then
# `vktune quantize --format F` of each result and `vktune evaluate --loss` on held-out verses:
#   base-F  the base quantized directly (no training)
#   PTQ-F   plain training, then quantized to F
#   QAT-F   training with --qat F, then quantized to F
# (the fp32 perplexity of each trained model too). Prints a markdown table.
# Usage: bench/qat.sh [STEPS] [FORMATS] (defaults 100, "int4 nf4"); LR (5e-5), VKTUNE (the binary).
# 100 steps and both formats took 8.4 minutes on two shared CPU cores (lavapipe).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
vktune="${VKTUNE:-$root/build/vktune}"
steps="${1:-100}"
formats="${2:-int4 nf4}"
lr="${LR:-5e-5}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$root/examples/make_corpus.sh" "$work/corpus" >/dev/null
head -n 400 "$work/corpus/kjv-valid.jsonl" >"$work/valid.jsonl"  # 400 held-out verses: a quick, stable estimate
export ASAN_OPTIONS=detect_leaks=0
train() {  # NAME FLAGS...
  local name="$1"; shift
  "$vktune" train --model "$root/examples/base" --data "$work/corpus/kjv-train.jsonl" --output-dir "$work/$name" \
    --method full --headless --max-steps "$steps" --per-device-train-batch-size 8 --max-length 64 \
    --learning-rate "$lr" --lr-scheduler-type constant --warmup-steps 0 --logging-steps 10 --save-steps 0 \
    --shuffle --seed 7 "$@" >"$work/$name.log" 2>&1
}
perplexity() {  # MODEL_DIR
  "$vktune" evaluate --loss --model "$1" --data "$work/valid.jsonl" --json 2>/dev/null |
    python3 -c 'import json, sys; print("%.3f" % json.loads(sys.stdin.read().strip().splitlines()[-1])["perplexity"])'
}
quantized() {  # MODEL_DIR FORMAT -> prints the perplexity of MODEL_DIR quantized to FORMAT
  "$vktune" quantize --model "$1" --format "$2" --output "$1-$2" >/dev/null 2>&1
  perplexity "$1-$2"
}
start=$(date +%s)
train ptq
echo "| run | steps | fp32 ppl | quantized ppl |"
echo "|---|---|---|---|"
echo "| base (no training) | 0 | $(perplexity "$root/examples/base") | |"
cp -r "$root/examples/base" "$work/base"
ptq_fp32=$(perplexity "$work/ptq")
for format in $formats; do
  train "qat-$format" --qat "$format"
  echo "| base, PTQ $format | 0 | | $(quantized "$work/base" "$format") |"
  echo "| plain training, PTQ $format | $steps | $ptq_fp32 | $(quantized "$work/ptq" "$format") |"
  echo "| --qat $format, then quantize $format | $steps | $(perplexity "$work/qat-$format") | $(quantized "$work/qat-$format" "$format") |"
done
echo "(${steps} steps of batch 8 x 64 tokens, lr $lr constant, seed 7; $(($(date +%s) - start)) s in all)"
