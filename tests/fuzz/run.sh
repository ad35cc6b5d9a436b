#!/usr/bin/env bash
# Runs one libFuzzer target for a bounded time: tests/fuzz/run.sh TARGET [SECONDS] [BUILD_DIR]
# (defaults: 60 s or $VKT_FUZZ_SECONDS, build-asan). The committed seeds in tests/fuzz/corpus/TARGET are read, never
# written; inputs the fuzzer finds go to BUILD_DIR/fuzz-corpus/TARGET (kept between runs) and a
# crashing input to BUILD_DIR/fuzz-artifacts/TARGET-crash-*, which fails the run. Reproduce one
# with BUILD_DIR/tests/fuzz/fuzz_TARGET FILE. Targets: safetensors model_config tokenizer jsonl
# train_yaml merge_yaml gguf.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
target="$1"
seconds="${VKT_FUZZ_SECONDS:-${2:-60}}"  # the environment wins: scripts/test.sh sets it for ctest
build_dir="${3:-$root/build-asan}"
binary="$build_dir/tests/fuzz/fuzz_$target"
seeds="$root/tests/fuzz/corpus/$target"
[ -x "$binary" ] || { echo "run.sh: no $binary (build with scripts/test.sh or -DVKT_FUZZ=ON)" >&2; exit 2; }
[ -d "$seeds" ] || { echo "run.sh: no seed corpus $seeds" >&2; exit 2; }
mkdir -p "$build_dir/fuzz-corpus/$target" "$build_dir/fuzz-artifacts"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
# -max_len 65536: the largest seed is ~60 KB; -timeout 10: no parser should take that long on one input.
exec "$binary" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 \
  -artifact_prefix="$build_dir/fuzz-artifacts/$target-" "$build_dir/fuzz-corpus/$target" "$seeds"
