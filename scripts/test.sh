#!/usr/bin/env bash
# The test command: builds if needed, then runs every test suite with Vulkan validation on.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build_dir="${BUILD_DIR:-$root/build}"
BUILD_DIR="$build_dir" "$root/scripts/build.sh"
"$root/scripts/fetch-test-data.sh"  # real tokenizers for the text_real suite (cached, pinned sha256)
export VKT_VALIDATION=1
ctest --test-dir "$build_dir" --output-on-failure -j"${TEST_JOBS:-2}" "$@"
