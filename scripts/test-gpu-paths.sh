#!/usr/bin/env bash
# The model-level golden suites on the GPU code paths, run on whatever device is here (lavapipe without a
# GPU): the shared-memory tiled matmul and attention bodies instead of the CPU drivers' direct ones,
# GPU-sized row kernels (256 threads), autotuning on (every shape class times its tile candidates and,
# for LoRA layers, fused against separate dispatches; cache in a fresh temporary folder), validation on.
# Not in CI: on 2 CPU cores it takes ~25 minutes (the tiled bodies run 5-15x slower there).
#   scripts/test-gpu-paths.sh [doctest suites, default model_hf,train_golden]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build_dir="${BUILD_DIR:-$root/build}"
BUILD_DIR="$build_dir" "$root/scripts/build.sh"
"$root/scripts/fetch-test-data.sh"
cache="$(mktemp -d /tmp/vktune-gpu-paths.XXXXXX)"
trap 'rm -rf "$cache"' EXIT
VKT_DISABLE_MATMUL_DIRECT=1 VKT_DISABLE_ATTENTION_DIRECT=1 VKT_ROW_THREADS=256 VKT_AUTOTUNE=1 VKT_VALIDATION=1 \
  XDG_CACHE_HOME="$cache" "$build_dir/vktune_tests" --test-suite="${1:-model_hf,train_golden}"
