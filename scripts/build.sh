#!/usr/bin/env bash
# Installs dependencies when missing, then configures and builds vktune into build/.
# BUILD_DIR, BUILD_TYPE and BUILD_TARGET (e.g. vktune: just the command, not the tests) may be set.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build_dir="${BUILD_DIR:-$root/build}"
"$root/scripts/setup-debian.sh"
if [ ! -f "$build_dir/build.ninja" ]; then
  cmake -S "$root" -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE="${BUILD_TYPE:-Release}" >/dev/null
fi
cmake --build "$build_dir" ${BUILD_TARGET:+--target "$BUILD_TARGET"} -- -j"$(nproc)"
