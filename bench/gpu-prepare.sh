#!/usr/bin/env bash
# Readies what bench/gpu.sh needs on the lent GPU machine (../shared/GPU.md): that machine has the NVIDIA
# driver, PyTorch, transformers and peft, but no Vulkan loader and none of vktune's shared libraries.
# Copies build/vktune (and build/vktune_tests) plus every shared library they need beyond glibc/libstdc++
# (the Vulkan loader included) into .gpu-carry/ (ignored through .git/info/exclude, ~45 MiB, under the
# 64 MiB a call may carry), and prints the device command. Run after building build/ in Release.
# The binary is built on Debian 12 (glibc 2.36): a device image with an older glibc will refuse it
# (then build in a container of that image instead).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
carry="$root/.gpu-carry"
grep -qx '/.gpu-carry/' "$root/.git/info/exclude" 2>/dev/null ||
  echo '/.gpu-carry/' >> "$(git -C "$root" rev-parse --git-path info/exclude)"
rm -rf "$carry" && mkdir -p "$carry/lib"
cp "$root/build/vktune" "$root/build/vktune_tests" "$carry/"
ldd "$root/build/vktune" "$root/build/vktune_tests" | awk '/=> \// { print $3 }' | sort -u |
  grep -Ev '/(libc|libm|libdl|libpthread|librt|ld-linux[^/]*|libstdc\+\+|libgcc_s)\.so' |
  while read -r library; do cp -L "$library" "$carry/lib/"; done
du -sh "$carry"
cat <<'EOF'
Device command (run tool, carry [".gpu-carry"], timeout_s 560):
export LD_LIBRARY_PATH=$PWD/.gpu-carry/lib PYTHONUNBUFFERED=1; ls /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json >/dev/null 2>&1 && export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json; mkdir -p build && cp .gpu-carry/vktune .gpu-carry/vktune_tests build/; build/vktune devices 2>&1 | tee $OUT/devices.txt; (timeout 150 build/vktune_tests --test-suite=kernels_matmul,kernels_attention,vk 2>&1 | tail -40) > $OUT/tests.txt; bench/gpu.sh --out /tmp/gpu --python python3 2>&1 | tee $OUT/gpu.txt; cp /tmp/gpu/RESULTS-*.md /tmp/gpu/peer.jsonl /tmp/gpu/gpu.log $OUT/
EOF
