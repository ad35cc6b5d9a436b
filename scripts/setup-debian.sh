#!/usr/bin/env bash
# Installs vktune's build and test dependencies from Debian's packages. Idempotent: packages
# already installed are skipped, so a second run costs one dpkg query.
# --sanitizers: instead, what the sanitizer build and the fuzz targets need (scripts/test.sh):
# clang, its compiler-rt (libclang-rt-<clang major>-dev holds ASan/UBSan and libFuzzer) and
# llvm-symbolizer (package llvm) for readable stacks.
set -euo pipefail
packages=(
  build-essential cmake ninja-build pkg-config
  libvulkan-dev glslang-tools mesa-vulkan-drivers vulkan-validationlayers vulkan-tools
  libglfw3-dev libimgui-dev libstb-dev libpng-dev
  doctest-dev nlohmann-json3-dev libcli11-dev libyaml-cpp-dev libpcre2-dev libutf8proc-dev liblapacke-dev
  xvfb xauth bible-kjv-text
  libopenmpi-dev openmpi-bin
  libopenblas-dev  # becomes libblas.so.3/liblapack.so.3 (alternatives): fast SVD/QR for PiSSA/OLoRA
)
if [ "${1:-}" = --sanitizers ]; then
  # The compiler-rt package is named after clang's major version (14 on Debian 12, 19 on 13).
  clang_major() { apt-cache show --no-all-versions clang 2>/dev/null | sed -n 's/^Depends: .*clang-\([0-9]*\).*/\1/p' | head -1; }
  if [ -z "$(clang_major)" ]; then  # a fresh system without package lists
    if [ "$(id -u)" -ne 0 ]; then sudo apt-get update -qq; else apt-get update -qq; fi
  fi
  clang_major=$(clang_major)
  [ -n "$clang_major" ] || { echo "setup: apt knows no clang package" >&2; exit 1; }
  packages=(clang "libclang-rt-$clang_major-dev" llvm)
fi
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "setup: installing ${missing[*]}"
sudo_cmd=()
[ "$(id -u)" -ne 0 ] && sudo_cmd=(sudo)
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
