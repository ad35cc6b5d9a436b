#!/usr/bin/env bash
# Installs vktune's build and test dependencies from Debian's packages. Idempotent: packages
# already installed are skipped, so a second run costs a few dpkg queries.
# --sanitizers: instead, what the sanitizer build and the fuzz targets need (scripts/test.sh):
# clang, its compiler-rt (libclang-rt-<clang major>-dev holds ASan/UBSan and libFuzzer) and
# llvm-symbolizer (package llvm) for readable stacks.
# On Debian 12 (bookworm) Mesa comes from Debian's bookworm-backports suite (25.0.7 instead of 22.3.6):
# its lavapipe, the CPU Vulkan driver that runs vktune without a GPU, takes 2.4x less time per step of
# the demo's training and lifts the 2 GiB device heap to all of host RAM (README "Running without a
# GPU"). The suite is enabled in /etc/apt/sources.list.d/bookworm-backports.sources if no source names
# it; Mesa's other packages (OpenGL, EGL, GBM) move to 25.0.7 with it, as Debian requires.
# VKT_STOCK_MESA=1 keeps the release's Mesa. Debian 13 ships Mesa 25 itself.
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
sudo_cmd=()
[ "$(id -u)" -ne 0 ] && sudo_cmd=(sudo)
export DEBIAN_FRONTEND=noninteractive
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
[ "${1:-}" = --sanitizers ] && exit 0
[ "${VKT_STOCK_MESA:-0}" = 1 ] && exit 0
# shellcheck disable=SC1091
codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
mesa_version=$(dpkg-query -W -f='${Version}' mesa-vulkan-drivers 2>/dev/null || true)
[ "$codename" = bookworm ] && dpkg --compare-versions "$mesa_version" lt 25 || exit 0
if ! grep -rqsE "^[^#]*bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
  echo "setup: enabling Debian's bookworm-backports suite for Mesa 25 (VKT_STOCK_MESA=1 keeps Mesa $mesa_version)"
  printf '%s\n' "Types: deb" "URIs: http://deb.debian.org/debian" "Suites: bookworm-backports" "Components: main" \
    "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg" |
    "${sudo_cmd[@]}" tee /etc/apt/sources.list.d/bookworm-backports.sources >/dev/null
fi
echo "setup: installing Mesa from bookworm-backports (lavapipe 25: README \"Running without a GPU\")"
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends -t bookworm-backports mesa-vulkan-drivers >/dev/null
