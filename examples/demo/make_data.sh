#!/usr/bin/env bash
# The demo task: turn a verse into a strict JSON record {"book", "chapter", "verse", "text"}. It
# needs a new FORM, not new facts (every field is in the prompt): "finetuning is for form". Short
# verses (at most 12 words) keep the demo fast. Every 10th short verse is held out for evaluation.
# The record follows "JSON:" with no space: after ": " the model must choose between `{` and `"`, two
# characters the Bible never contains, whose embeddings the base model therefore left almost parallel
# (cosine ~0.9); LoRA does not touch embeddings, and telling them apart in the same context took it
# far longer.
# The verse starts on its own line after the reference: " And" (after a space) is one token of this
# byte-level BPE, "And" (after a newline, or after the record's `"`) is two ("A", "nd"); on its own
# line the verse is the same tokens in the prompt as in the record's "text", so the model can copy it
# token by token (an induction head: examples/base has one, README "Results"). The earlier record's
# "last" word could not be copied that way (in the verse it always follows a space, in the record a
# quote: other tokens), which capped every-field-right near 35% even on a base that copies.
# The reference is written "Ge 5:12", not the corpus's "Ge5:12": in the record every number follows
# a bare space token (`": 5`; " 5" is two tokens here, " " and "5"), and a bare space occurs
# nowhere else in the prompt (words carry their space: " God" is one token), so the chapter can be
# found the way the verse is (after ":"). Written "Ge5:12", the chapter followed the book's token in
# the prompt and a space in the record; 400 QLoRA steps then wrote one chapter for every verse.
# copy_probe.jsonl asks for the held-out verses again, right after the verse and its reference: it
# measures whether a model can copy from its context at all (`vktune evaluate --data copy_probe.jsonl`).
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
    if (text ~ /["\\]/) next  # none in the KJV; the record would need a second level of escaping
    ref = book " " rest  # "Ge 5:12": the chapter follows a bare space token, as in the record
    prompt = ref "\\n" text "\\nJSON:"
    completion = "{\\\"book\\\": \\\"" book "\\\", \\\"chapter\\\": " chapter ", \\\"verse\\\": " verse ", \\\"text\\\": \\\"" text "\\\"}"
    line = "{\"prompt\": \"" prompt "\", \"completion\": \"" completion "\"}"
    if (++n % 10 != 0) { print line > train; next }
    print line > test
    print "{\"prompt\": \"" ref " " text "\\n" ref "\", \"completion\": \" " text "\"}" > probe
  }'
echo "demo data: $(wc -l < "$out/train.jsonl") training and $(wc -l < "$out/test.jsonl") held-out examples in $out"
