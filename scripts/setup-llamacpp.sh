#!/usr/bin/env bash
# Installs llama.cpp for the optional `llamacpp` test suite (tests/test_llamacpp.cpp): the npm
# package node-llama-cpp, pinned, with its prebuilt CPU binary (@node-llama-cpp/linux-x64), into a
# cache folder outside the repository. Needs node >= 20 and npm.
#   scripts/setup-llamacpp.sh            # into ${VKT_NODE_LLAMA_CPP:-~/.cache/vktune/node-llama-cpp}
#   ctest --test-dir build -L llamacpp --output-on-failure
set -euo pipefail
dir="${VKT_NODE_LLAMA_CPP:-$HOME/.cache/vktune/node-llama-cpp}"
mkdir -p "$dir"
[ -f "$dir/package.json" ] || echo '{"name": "vktune-llamacpp", "private": true}' > "$dir/package.json"
# --ignore-scripts: the postinstall would offer to build from source; the prebuilt binary is enough.
npm install --prefix "$dir" --no-audit --no-fund --ignore-scripts node-llama-cpp@3.22.1
echo "node-llama-cpp 3.22.1 installed in $dir"
