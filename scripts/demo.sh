#!/usr/bin/env bash
# The main job, end to end: QLoRA (NF4 base with double quantization) teaches the bundled base
# model (examples/base, a 3.5M-parameter Llama that vktune pretrained on the King James Bible) a
# new FORM -- answering with a strict JSON record of a verse -- then compares the base and the
# finetuned model on held-out verses. Builds first if needed. With a display the dashboard opens;
# headless, a progress bar runs and the dashboard is written to build/demo/dashboard.png.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build_dir="${BUILD_DIR:-$root/build}"
BUILD_DIR="$build_dir" BUILD_TARGET=vktune "$root/scripts/build.sh"
vktune="$build_dir/vktune"
out="$build_dir/demo"
rm -rf "$out"
mkdir -p "$out"
steps="${DEMO_STEPS:-}"  # shortened runs (the CI test) set this
echo "== vktune demo: QLoRA on examples/base to answer in a strict JSON form"
display_flags=(--headless --plot "$out/dashboard.png")
if [ -n "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ] && [ -z "${DEMO_HEADLESS:-}" ]; then display_flags=(--dashboard); fi
"$vktune" train --config "$root/examples/demo/qlora.yaml" --model "$root/examples/base" \
  --data "$root/examples/demo/train.jsonl" --output-dir "$out/adapter" ${steps:+--max-steps "$steps"} "${display_flags[@]}"
echo
echo "== held-out verses: the base model vs the finetuned one (greedy decoding)"
"$vktune" evaluate --model "$root/examples/base" --adapter "$out/adapter" --data "$root/examples/demo/test.jsonl" \
  --json-keys book,chapter,verse,text --limit "${DEMO_EVAL:-40}" --compare-base --show 4 --quant nf4 \
  --max-new-tokens 96 | tee "$out/evaluation.txt"
echo
echo "adapter (PEFT format): $out/adapter"
[ -f "$out/dashboard.png" ] && echo "dashboard: $out/dashboard.png"
echo
echo "== what to try next"
echo "  your own data (JSONL: prompt/completion, text or messages):"
echo "    $vktune train --config examples/demo/qlora.yaml --model examples/base --data YOURS.jsonl --output-dir out"
echo "  whether a 7B-8B model fits your GPU, before you rent one:"
echo "    $vktune plan --model examples/configs/llama-3-8b.json --method qlora --lora-r 16 --device-memory 24GiB"
echo "  whether a base model copies a verse it has just read (this one copies random words and numbers, not yet whole verses: README \"Results\"):"
echo "    $vktune evaluate --model examples/base --data examples/demo/copy_probe.jsonl --limit 20 --show 2"
echo "  merging adapters or models (mergekit's YAML): $vktune merge examples/merge/lora_adapters.yaml --output merged"
echo "  a standalone model (PEFT merge_and_unload): $vktune export --model BASE --adapter ADAPTER --output DIR"
exit 0
