#!/usr/bin/env bash
# The demo task: turn a verse into a strict JSON record. It needs a new FORM, not new facts (every
# field is in the prompt): "finetuning is for form". Short verses (at most 12 words) keep the
# demo fast. Every 10th short verse is held out for evaluation. The record follows "JSON:" with no
# space: after ": " the model must choose between `{` and `"`, two characters the Bible never
# contains, whose embeddings the base model therefore left almost parallel (cosine ~0.9); LoRA
# does not touch embeddings, and telling them apart in the same context took it far longer.
# The verse starts on its own line after the reference: " And" (after a space) is one token of
# this byte-level BPE, "And" (after a newline, or after the record's `"`) is two ("A", "nd"); on
# its own line the first word is the same tokens in the prompt as in the record, so the model can
# copy it. The last word cannot be copied that way (in the verse it always follows a space).
# copy_probe.jsonl asks for the held-out verses again, right after the verse and its reference: it
# measures whether a model can copy from its context at all (`vktune evaluate --data copy_probe.jsonl`;
# examples/base cannot, README "Results").
# Usage: examples/demo/make_data.sh OUTPUT_DIR   (writes train.jsonl, test.jsonl and copy_probe.jsonl)
set -euo pipefail
out="${1:?usage: make_data.sh OUTPUT_DIR}"
mkdir -p "$out"
bible -f Gen1:1-Rev22:21 | awk -v train="$out/train.jsonl" -v test="$out/test.jsonl" -v probe="$out/copy_probe.jsonl" '
  {
    ref = $1; text = substr($0, length(ref) + 2)
    if (split(text, words, " ") > 12) next
    if (!match(ref, /^[0-9]*[A-Za-z]+/)) next
    book = substr(ref, 1, RLENGTH); rest = substr(ref, RLENGTH + 1)
    split(rest, cv, ":"); chapter = cv[1]; verse = cv[2]
    first = words[1]; last = words[length(words)]
    gsub(/[^A-Za-z]/, "", first); gsub(/[^A-Za-z]/, "", last)
    gsub(/"/, "\\\"", text)
    prompt = ref "\\n" text "\\nJSON:"
    completion = "{\\\"book\\\": \\\"" book "\\\", \\\"chapter\\\": " chapter ", \\\"verse\\\": " verse ", \\\"first\\\": \\\"" first "\\\", \\\"last\\\": \\\"" last "\\\"}"
    line = "{\"prompt\": \"" prompt "\", \"completion\": \"" completion "\"}"
    if (++n % 10 != 0) { print line > train; next }
    print line > test
    print "{\"prompt\": \"" ref " " text "\\n" ref "\", \"completion\": \" " text "\"}" > probe
  }'
echo "demo data: $(wc -l < "$out/train.jsonl") training and $(wc -l < "$out/test.jsonl") held-out examples in $out"
