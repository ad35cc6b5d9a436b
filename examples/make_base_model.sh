#!/usr/bin/env bash
# The recipe of examples/base (the demo's base model), from nothing but Debian packages:
#   1. the King James Bible as JSONL (examples/make_corpus.sh),
#   2. a 2048-token byte-level BPE tokenizer trained on it (vktune tokenizer-train),
#   3. a freshly initialised 3.5M-parameter Llama (vktune new-model, examples/recipes/kjv-base-config.json),
#   4. full pretraining (vktune train --method full, examples/recipes/pretrain-kjv.yaml),
#   5. the final model copied to examples/base.
# Usage: examples/make_base_model.sh [WORK_DIR]   (resumes an interrupted run in WORK_DIR)
# BASE_RECIPE=rows: issue 20's candidate instead, tokenizer and pretraining on rows of consecutive
# verses (examples/make_copy_rows.py, examples/recipes/pretrain-kjv-rows.yaml; README "Results").
# BASE_RECIPE=induction (the committed examples/base): after step 4, continued pretraining on rows that
# reward copying from the context (examples/make_induction_rows.py, examples/recipes/pretrain-kjv-induction.yaml).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
work="${1:-$root/build/base-model}"
vktune="${VKTUNE:-$root/build/vktune}"
data=kjv recipe=pretrain-kjv
[ "${BASE_RECIPE:-}" = rows ] && data=kjv-rows recipe=pretrain-kjv-rows
mkdir -p "$work"
"$root/examples/make_corpus.sh" "$work/corpus"
[ -f "$work/tokenizer/tokenizer.json" ] || "$vktune" tokenizer-train --data "$work/corpus/$data-train.jsonl" \
  --vocab-size 2048 --output "$work/tokenizer"
[ -f "$work/random/model.safetensors" ] || "$vktune" new-model --config "$root/examples/recipes/kjv-base-config.json" \
  --tokenizer "$work/tokenizer" --output "$work/random" --seed 1
"$vktune" train --config "$root/examples/recipes/$recipe.yaml" --model "$work/random" \
  --data "$work/corpus/$data-train.jsonl" --eval-data "$work/corpus/$data-valid.jsonl" \
  --output-dir "$work/pretrained" --resume-from-checkpoint latest --headless
final="$work/pretrained"
if [ "${BASE_RECIPE:-}" = induction ]; then
  python3 "$root/examples/make_induction_rows.py" "$work/corpus/kjv.txt" "$work/pretrained/tokenizer.json" \
    "$work/corpus/kjv-induction-train.jsonl" "$work/corpus/kjv-induction-valid.jsonl"
  "$vktune" train --config "$root/examples/recipes/pretrain-kjv-induction.yaml" --model "$work/pretrained" \
    --data "$work/corpus/kjv-induction-train.jsonl" --eval-data "$work/corpus/kjv-induction-valid.jsonl" \
    --output-dir "$work/induction" --resume-from-checkpoint latest --headless
  final="$work/induction" recipe=pretrain-kjv-induction
fi
mkdir -p "$root/examples/base"
for f in config.json model.safetensors tokenizer.json tokenizer_config.json generation_config.json; do
  [ -f "$final/$f" ] && cp "$final/$f" "$root/examples/base/$f"
done
# The pretraining peak rate, where vktune lr-find (and HF tools) look for it.
recipe_value() { sed -n "s/^$1: *//p" "$root/examples/recipes/$recipe.yaml"; }
printf '{"learning_rate": %s, "lr_scheduler_type": "%s"}\n' "$(recipe_value learning_rate)" \
  "$(recipe_value lr_scheduler_type)" > "$root/examples/base/training_args.json"
echo "base model: $root/examples/base"
