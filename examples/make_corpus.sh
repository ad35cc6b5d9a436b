#!/usr/bin/env bash
# Extracts the King James Bible from Debian's bible-kjv packages into JSONL for pretraining the
# demo's base model: every verse is one {"text": "Ge1:1 In the beginning ..."} line; every 20th
# verse goes to the validation split. Also kjv-rows-{train,valid}.jsonl, the same split as runs of
# consecutive verses, some verse repeated (examples/make_copy_rows.py): what issue 20's candidate base
# (BASE_RECIPE=rows examples/make_base_model.sh) is pretrained on.
# Usage: examples/make_corpus.sh OUTPUT_DIR
set -euo pipefail
out="${1:?usage: make_corpus.sh OUTPUT_DIR}"
mkdir -p "$out"
command -v bible >/dev/null || { echo "bible not found: apt-get install bible-kjv bible-kjv-text" >&2; exit 1; }
bible -f Gen1:1-Rev22:21 > "$out/kjv.txt"
# JSON-escape backslashes and quotes (the text has no other characters that need it).
awk -v train="$out/kjv-train.jsonl" -v valid="$out/kjv-valid.jsonl" '
  { gsub(/\\/, "\\\\"); gsub(/"/, "\\\""); line = "{\"text\": \"" $0 "\"}" }
  NR % 20 == 0 { print line > valid; next }
  { print line > train }' "$out/kjv.txt"
echo "corpus: $(wc -l < "$out/kjv-train.jsonl") training verses, $(wc -l < "$out/kjv-valid.jsonl") validation verses in $out"
python3 "$(dirname "$0")/make_copy_rows.py" "$out/kjv.txt" "$out/kjv-rows-train.jsonl" "$out/kjv-rows-valid.jsonl"
echo "rows: $(wc -l < "$out/kjv-rows-train.jsonl") training, $(wc -l < "$out/kjv-rows-valid.jsonl") validation rows of consecutive verses"
