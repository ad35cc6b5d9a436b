#!/usr/bin/env bash
# The main job: builds if needed, then runs vktune. (Until the demo lands: lists the devices.)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build_dir="${BUILD_DIR:-$root/build}"
BUILD_DIR="$build_dir" "$root/scripts/build.sh"
"$build_dir/vktune" devices
