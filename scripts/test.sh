#!/usr/bin/env bash
# The test command: builds if needed, then runs every test suite with Vulkan validation on; then
# the sanitizer pass: a second build with clang in build-asan (AddressSanitizer +
# UndefinedBehaviorSanitizer + LeakSanitizer) runs the host-code suites (ctest label `sanitize`)
# and every libFuzzer target for VKT_FUZZ_SECONDS (default 15) over its seed corpus (label `fuzz`).
# The sanitizer pass runs when no ctest arguments are given; VKT_SANITIZE=1/0 forces it on/off.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build_dir="${BUILD_DIR:-$root/build}"
sanitize="${VKT_SANITIZE:-$([ $# -eq 0 ] && echo 1 || echo 0)}"
BUILD_DIR="$build_dir" "$root/scripts/build.sh"
"$root/scripts/fetch-test-data.sh"  # real tokenizers for the text_real suite (cached, pinned sha256)
export VKT_VALIDATION=1
ctest --test-dir "$build_dir" --output-on-failure -j"${TEST_JOBS:-2}" "$@"
[ "$sanitize" = 1 ] || exit 0
sanitize_dir="${SANITIZE_BUILD_DIR:-$root/build-asan}"
"$root/scripts/setup-debian.sh" --sanitizers
if [ ! -f "$sanitize_dir/build.ninja" ]; then
  CC=clang CXX=clang++ cmake -S "$root" -B "$sanitize_dir" -G Ninja -DCMAKE_BUILD_TYPE=Debug -DVKT_SANITIZE=ON \
    -DVKT_FUZZ=ON >/dev/null
fi
cmake --build "$sanitize_dir" -- -j"$(nproc)"
ctest --test-dir "$sanitize_dir" --output-on-failure -j"${TEST_JOBS:-2}" -L 'sanitize|fuzz'
