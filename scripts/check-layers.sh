#!/usr/bin/env bash
# Checks that no layer includes a higher one (ARCHITECTURE.md, "Layers"). Every quoted include
# of the form "engine/<layer>/...", "ui/...", "bench/..." or "app/..." in a layer's sources must
# name that layer or one it may use. Prints each violation as file:line and exits 1.
#   scripts/check-layers.sh [ROOT]     check the tree at ROOT (default: this repository)
#   scripts/check-layers.sh --self-test  prove the check fails on an upward include
set -euo pipefail

# What each layer may include besides itself. text sits on base alone: the tokenizer needs no GPU.
declare -A allowed=(
  [engine/base]=""
  [engine/vk]="engine/base"
  [engine/kernels]="engine/base engine/vk"
  [engine/quant]="engine/base engine/vk engine/kernels"
  [engine/spec]="engine/base engine/vk engine/kernels engine/quant"
  [engine/plan]="engine/base engine/vk engine/kernels engine/quant engine/spec"
  [engine/text]="engine/base"
  [engine/model]="engine/base engine/vk engine/kernels engine/quant engine/spec engine/plan engine/text"
  [engine/train]="engine/base engine/vk engine/kernels engine/quant engine/spec engine/plan engine/text engine/model"
  [engine/merge]="engine/base engine/vk engine/kernels engine/quant engine/spec engine/plan engine/text engine/model"
  [bench]="engine/base engine/vk engine/kernels engine/quant engine/spec engine/plan engine/text engine/model engine/train engine/merge"
  [ui]="engine/base engine/vk engine/kernels engine/quant engine/spec engine/plan engine/text engine/model engine/train"
  [app]="engine/base engine/vk engine/kernels engine/quant engine/spec engine/plan engine/text engine/model engine/train engine/merge bench ui"
)

check_tree() {
  local root="$1" violations=0 layer dir file line target
  # A directory under engine/ that the table does not know is itself a violation: a new layer
  # must say where it sits.
  for dir in "$root"/engine/*/; do
    layer="engine/$(basename "$dir")"
    if [ -z "${allowed[$layer]+set}" ]; then
      echo "$layer: a layer that scripts/check-layers.sh does not know; add it to the table" >&2
      violations=$((violations + 1))
    fi
  done
  for layer in "${!allowed[@]}"; do
    [ -d "$root/$layer" ] || continue
    while IFS=: read -r file line target; do
      target_layer="$(sed -E 's#^(engine/[a-z_]+|[a-z_]+)/.*#\1#' <<<"$target")"
      [ "$target_layer" = "$layer" ] && continue
      case " ${allowed[$layer]} " in *" $target_layer "*) continue ;; esac
      echo "${file#"$root"/}:$line: $layer includes \"$target\" from $target_layer, a layer above it" >&2
      violations=$((violations + 1))
    done < <(grep -rnoE '^#include "(engine/[a-z_]+|ui|bench|app)/[^"]+"' "$root/$layer" \
               --include='*.cpp' --include='*.hpp' | sed -E 's#^([^:]+):([0-9]+):\#include "([^"]+)"#\1:\2:\3#')
  done
  if [ "$violations" -gt 0 ]; then
    echo "layers: $violations upward include(s)" >&2
    return 1
  fi
  echo "layers: no layer includes a higher one"
}

if [ "${1:-}" = "--self-test" ]; then
  scratch="$(mktemp -d)"
  trap 'rm -rf "$scratch"' EXIT
  mkdir -p "$scratch/engine/vk" "$scratch/engine/model"
  echo '#include "engine/vk/context.hpp"' >"$scratch/engine/model/ok.cpp"
  check_tree "$scratch" >/dev/null || { echo "self-test: a downward include was rejected" >&2; exit 1; }
  echo '#include "engine/model/weights.hpp"' >"$scratch/engine/vk/upward.cpp"
  if check_tree "$scratch" 2>/dev/null; then
    echo "self-test: an upward include (vk -> model) was not caught" >&2
    exit 1
  fi
  mkdir -p "$scratch/engine/unknown"
  rm "$scratch/engine/vk/upward.cpp"
  if check_tree "$scratch" 2>/dev/null; then
    echo "self-test: an unknown layer directory was not caught" >&2
    exit 1
  fi
  echo "layers self-test: upward includes and unknown layers are caught"
  exit 0
fi

check_tree "$(cd "${1:-$(dirname "$0")/..}" && pwd)"
