#!/usr/bin/env bash
# Demo-task variants screened for issue 20 (bench/demo_task_screen.py; README "Results"), both with the
# verse first and its reference right before "JSON:" (so the reference sits a near-constant distance
# before the record's book/chapter/verse): A keeps the demo's five fields (book, chapter, verse, first,
# last); B has book, chapter, verse and the whole verse as "text" (every token of it the same in the
# prompt and the record). Same verses and split as examples/demo/make_data.sh.
# Usage: bench/demo_task_variants.sh OUTPUT_DIR A|B   (writes train.jsonl and test.jsonl)
set -euo pipefail
out="${1:?usage: demo_task_variants.sh OUTPUT_DIR A|B}"
variant="${2:?usage: demo_task_variants.sh OUTPUT_DIR A|B}"
mkdir -p "$out"
bible -f Gen1:1-Rev22:21 | awk -v train="$out/train.jsonl" -v test="$out/test.jsonl" -v variant="$variant" '
  {
    ref = $1; text = substr($0, length(ref) + 2)
    if (split(text, words, " ") > 12) next
    if (!match(ref, /^[0-9]*[A-Za-z]+/)) next
    book = substr(ref, 1, RLENGTH); rest = substr(ref, RLENGTH + 1)
    split(rest, cv, ":"); chapter = cv[1]; verse = cv[2]
    first = words[1]; last = words[length(words)]
    gsub(/[^A-Za-z]/, "", first); gsub(/[^A-Za-z]/, "", last)
    gsub(/"/, "\\\"", text)
    prompt = text "\\n" ref "\\nJSON:"
    head = "{\\\"book\\\": \\\"" book "\\\", \\\"chapter\\\": " chapter ", \\\"verse\\\": " verse
    if (variant == "A") completion = head ", \\\"first\\\": \\\"" first "\\\", \\\"last\\\": \\\"" last "\\\"}"
    else completion = head ", \\\"text\\\": \\\"" text "\\\"}"
    line = "{\"prompt\": \"" prompt "\", \"completion\": \"" completion "\"}"
    if (++n % 10 == 0) print line > test; else print line > train
  }'
