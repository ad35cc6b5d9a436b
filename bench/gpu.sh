#!/usr/bin/env bash
# One GPU measurement, made to fit the ~15 minutes a lent GPU machine gives (../shared/GPU.md): in one
# run, `vktune devices`, the kernel table (`vktune bench kernels`), then LoRA and QLoRA training-step
# tokens/s and peak device memory of vktune on a random-init Llama-3.2-1B-shape model
# (bench/configs/llama-3.2-1b.json; batch 4 x 1024 packed tokens, r 16 alpha 32 on all linear layers,
# bf16 base weights and bf16 activations; QLoRA: NF4 + double quant), and the same steps in PyTorch +
# PEFT (bench/peft_peer.py: bf16 autocast, the same model folder and the same packed tokens) when
# python can import torch, transformers and peft. Prints the ratio table and writes RESULTS-<gpu>.md.
#
#   bench/gpu.sh [--dry-run] [--out DIR] [--vktune PATH] [--python PATH]
#
# --dry-run: the same script on whatever device is there (lavapipe in CI) with a tiny model
# (bench/configs/llama-tiny.json, batch 2 x 64, 2 steps), one kernel row, the CPU PyTorch
# peer when torch + transformers + peft import (else it says the peer was skipped), and the results file
# written into --out only. A ctest entry (bench_gpu_dry_run) keeps it working.
# Full run: results in OUT (default build/bench-gpu) and bench/RESULTS-<gpu>.md. Budget on an H100/H200:
# ~1 min model write, 2 x ~1 min vktune, 2 x ~1 min PyTorch, kernel table capped at KERNEL_TIMEOUT s.
# Environment: STEPS (training steps per method), KERNEL_TIMEOUT (s, default 150; also caps `bench tune`,
# TUNE_TIMEOUT overrides), PEER_TIMEOUT (s, 240), FP16_ROW (1: also an fp16 LoRA row, `--dtype fp16 --fp16`,
# the products the cooperative-matrix bodies take; default 1 on a full run where `vktune devices` reports
# VK_KHR_cooperative_matrix shapes, else 0).
# Every training run logs the matmul path of each product (VKT_LOG_MATMUL_PATHS=1: coopmat with its tiles,
# or the tiled/direct body and tiles) and profiles its logging steps (device time per kernel kind); the
# results file lists both per run.
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dry_run=0
out=""
vktune="${VKTUNE:-$root/build/vktune}"
python="${PYTHON:-}"
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) dry_run=1 ;;
    --out) out="$2"; shift ;;
    --vktune) vktune="$2"; shift ;;
    --python) python="$2"; shift ;;
    *) echo "usage: bench/gpu.sh [--dry-run] [--out DIR] [--vktune PATH] [--python PATH]" >&2; exit 2 ;;
  esac
  shift
done
[ -x "$vktune" ] || { echo "gpu.sh: no vktune binary at $vktune (build it, or pass --vktune)" >&2; exit 1; }
if [ "$dry_run" = 1 ]; then
  out="${out:-$root/build/bench-gpu-dry}"
  config="$root/bench/configs/llama-tiny.json"
  batch=2 seq=64 steps="${STEPS:-2}"
  kernel_args=(--repeat 1 --op matmul_nt --shape "lora A fwd")
else
  out="${out:-$root/build/bench-gpu}"
  config="$root/bench/configs/llama-3.2-1b.json"
  batch=4 seq=1024 steps="${STEPS:-8}"
  kernel_args=(--repeat 5)
fi
mkdir -p "$out"
log() { echo "gpu.sh: $*" | tee -a "$out/gpu.log" >&2; }
: > "$out/gpu.log"
export XDG_CACHE_HOME="$out/cache"  # the autotune cache lives in OUT (a fresh machine: tuned from scratch)
start_all=$(date +%s)

# 1. The device.
"$vktune" devices > "$out/devices.txt" 2>&1 || { log "vktune devices failed"; cat "$out/devices.txt" >&2; exit 1; }
cat "$out/devices.txt"
device_json=$("$vktune" devices --json 2>/dev/null | head -1)
gpu_name=$(sed -n 's/.*"name":"\([^"]*\)".*/\1/p' <<<"$device_json")
driver=$(sed -n 's/.*"driver_info":"\([^"]*\)".*/\1/p' <<<"$device_json")
gpu_slug=$(tr 'A-Z' 'a-z' <<<"$gpu_name" | sed 's/(.*//; s/nvidia //; s/[^a-z0-9]\+/-/g; s/^-//; s/-$//')
gpu_slug=${gpu_slug:-unknown}

kernel_timeout="${KERNEL_TIMEOUT:-150}"
[ "$dry_run" = 1 ] && kernel_timeout="${KERNEL_TIMEOUT:-60}"
# 2. Autotuning up front (cache in OUT), so that no
# training step below pays for it; the last line of tune.txt says how many classes were timed.
tune_args=()
[ "$dry_run" = 1 ] && tune_args=(--op matmul_nt --shape "lora A fwd")
t0=$(date +%s)
timeout "${TUNE_TIMEOUT:-$kernel_timeout}" "$vktune" bench tune "${tune_args[@]}" > "$out/tune.txt" 2> "$out/tune.err" ||
  log "bench tune exited $? (124: stopped after ${kernel_timeout}s)"
log "$(tail -n 1 "$out/tune.txt") in $(($(date +%s) - t0)) s"

# 2c. The kernel table (GPU time from timestamp queries; capped so the training rows always run).
timeout "$kernel_timeout" "$vktune" bench kernels "${kernel_args[@]}" > "$out/kernels.txt" 2> "$out/kernels.err"
status=$?
[ "$status" = 0 ] || log "bench kernels exited $status (124: stopped after ${kernel_timeout}s; the rows so far are kept)"
cat "$out/kernels.txt"

# 3. The model and the data. Packed text from the demo's records (tokenizer: examples/base, ids below any vocab).
model="$out/model"
if [ ! -f "$model/model.safetensors" ] || ! cmp -s "$config" "$out/model.config.json"; then
  rm -rf "$model"
  t0=$(date +%s)
  "$vktune" new-model --config "$config" --tokenizer "$root/examples/base" --output "$model" --seed 1 > /dev/null \
    || { log "new-model failed"; exit 1; }
  cp "$config" "$out/model.config.json"
  log "model written in $(($(date +%s) - t0)) s"
fi
data="$out/data.jsonl"
sed 's/"prompt": "\(.*\)", "completion": "\(.*\)"}$/"text": "\1 \2"}/' "$root/examples/demo/train.jsonl" > "$data"
grep -q '"text"' "$data" || { log "could not build $data from examples/demo/train.jsonl"; exit 1; }

# 4. vktune LoRA and QLoRA. tokens/s: the last logged window (steady state); peak: the largest
# sum of the ledger's device categories over the logged steps (offloaded optimizer state excluded).
common=(--data "$data" --lora-r 16 --lora-alpha 32 --target-modules all-linear --packing --max-length "$seq"
        --per-device-train-batch-size "$batch" --gradient-accumulation-steps 1 --max-steps "$steps"
        --logging-steps $(((steps + 1) / 2)) --save-steps 0 --headless --overwrite-output-dir --bf16)
declare -A tokens peak
methods=(lora qlora)
has_coopmat=0
grep -q '"coopmat_shapes":\["[^]]*f16\*f16+f32 subgroup' <<<"$device_json" && has_coopmat=1
[ "${FP16_ROW:-$((has_coopmat && !dry_run))}" = 1 ] && methods+=(lora-fp16)
export VKT_LOG_MATMUL_PATHS=1
for run in "${methods[@]}"; do
  method=${run%-fp16}
  dtype_args=(--dtype bf16)
  [ "$run" = lora-fp16 ] && dtype_args=(--dtype fp16)
  t0=$(date +%s)
  precision_args=("${common[@]}")
  [ "$run" = lora-fp16 ] && precision_args=("${common[@]/--bf16/--fp16}")
  if ! "$vktune" train --model "$model" --output-dir "$out/train-$run" --method "$method" "${dtype_args[@]}" \
    "${precision_args[@]}" > "$out/train-$run.log" 2>&1; then
    log "vktune train --method $method ($run) failed; its log:"
    tail -n 15 "$out/train-$run.log" >&2
    exit 1
  fi
  metrics="$out/train-$run/metrics.jsonl"
  tokens[$run]=$(grep '"loss"' "$metrics" | tail -1 | sed 's/.*"tokens_per_sec":\([0-9.e+-]*\).*/\1/')
  peak[$run]=$(grep '"loss"' "$metrics" | sed 's/.*"memory":{\([^}]*\)}.*/\1/' |
    awk -F, '{ s = 0; for (i = 1; i <= NF; i++) { split($i, kv, ":"); if (kv[1] !~ /offload/) s += kv[2] } if (s > m) m = s } END { printf "%.0f", m }')
  grep -o 'matmul path: .*' "$out/train-$run.log" | sed 's/^matmul path: //' | sort -u > "$out/paths-$run.txt"
  log "vktune $run: ${tokens[$run]} tokens/s, peak ${peak[$run]} bytes, $(($(date +%s) - t0)) s," \
    "$(grep -c ': coopmat' "$out/paths-$run.txt") of $(wc -l < "$out/paths-$run.txt") products on coopmat"
done

# 5. The PyTorch + PEFT peer, same model folder and tokens.
peer_status="skipped"
if [ -z "$python" ]; then
  for candidate in python3 /usr/bin/python3; do
    if command -v "$candidate" > /dev/null && "$candidate" -c 'import torch, transformers, peft, tokenizers' 2> /dev/null; then
      python="$candidate"
      break
    fi
  done
fi
if [ -n "$python" ] && "$python" -c 'import torch, transformers, peft, tokenizers' 2> /dev/null; then
  peer_args=("$model" "$data" --batch "$batch" --seq "$seq" --rank 16 --alpha 32 --steps "$steps")
  [ "$dry_run" = 1 ] && peer_args+=(--threads 2)
  t0=$(date +%s)
  if timeout "${PEER_TIMEOUT:-240}" "$python" "$root/bench/peft_peer.py" "${peer_args[@]}" > "$out/peer.jsonl" 2> "$out/peer.err"; then
    peer_status="ran"
  else
    peer_status="failed (exit $?, see peer.err)"
    tail -n 5 "$out/peer.err" >&2
  fi
  log "PyTorch+PEFT peer ($python): $peer_status, $(($(date +%s) - t0)) s"
else
  log "PyTorch+PEFT peer skipped: no python with torch, transformers, peft and tokenizers (pass --python)"
fi
peer_field() {  # method field -> value from peer.jsonl ("" when absent)
  [ -f "$out/peer.jsonl" ] || return 0
  grep "\"method\": \"$1\"" "$out/peer.jsonl" | grep -v skipped | sed -n "s/.*\"$2\": \"\{0,1\}\([^,\"}]*\).*/\1/p" | head -1
}

# 6. The table and the results file.
results="$out/RESULTS-$gpu_slug.md"
mib() { awk "BEGIN { printf \"%.0f\", $1 / 1048576 }"; }
{
  echo "# bench/gpu.sh on $gpu_name"
  echo
  echo "$(date -u +%Y-%m-%d), driver $driver, vktune $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?')$([ "$dry_run" = 1 ] && echo ', DRY RUN (tiny model: the numbers say nothing about speed)')."
  echo "Model: $(basename "$config") (random init, bench/configs), batch $batch x $seq packed tokens, LoRA r 16 alpha 32 on"
  echo "all linear layers, bf16 base and activations (vktune \`--dtype bf16 --bf16\`; QLoRA: NF4 + double quant);"
  echo "PyTorch + PEFT: bf16 weights, bf16 autocast, fp32 LoRA weights, AdamW. tokens/s: median (peer) or last"
  echo "logged window (vktune) of $steps steps; peak: vktune's memory ledger (device), torch.cuda.max_memory_allocated"
  echo "(peer on CUDA; on the CPU the peer's figure is host RSS, not comparable). Peer: $peer_status."
  echo
  echo "| trainer | tokens/s | peak MiB | vs PyTorch LoRA tokens/s |"
  echo "|---|---|---|---|"
  torch_lora=$(peer_field lora tokens_per_sec)
  for method in "${methods[@]}"; do
    ratio="n/a"
    [ -n "$torch_lora" ] && ratio=$(awk "BEGIN { printf \"%.2f\", ${tokens[$method]} / $torch_lora }")
    printf "| vktune %s | %.0f | %s | %s |\n" "$method" "${tokens[$method]}" "$(mib "${peak[$method]}")" "$ratio"
  done
  for method in lora qlora; do
    value=$(peer_field "$method" tokens_per_sec)
    if [ -n "$value" ]; then
      bytes=$(peer_field "$method" peak_bytes)
      kind=$(peer_field "$method" peak_kind)
      printf "| PyTorch+PEFT %s (%s) | %.0f | %s%s | %s |\n" "$method" "$(peer_field "$method" device)" "$value" \
        "$(mib "$bytes")" "$([ "$kind" = device ] || echo " (host RSS)")" "$(awk "BEGIN { printf \"%.2f\", $value / $torch_lora }")"
    else
      echo "| PyTorch+PEFT $method | skipped | | |"
    fi
  done
  echo
  echo "vktune QLoRA / LoRA tokens/s: $(awk "BEGIN { printf \"%.2f\", ${tokens[qlora]} / ${tokens[lora]} }") (goal >= 0.85)."
  torch_qlora=$(peer_field qlora tokens_per_sec)
  [ -n "$torch_qlora" ] && echo "vktune QLoRA / PyTorch QLoRA tokens/s: $(awk "BEGIN { printf \"%.2f\", ${tokens[qlora]} / $torch_qlora }")."
  echo
  echo "Step profile: device time per kernel kind of one micro-batch (forward + backward, timestamp queries around"
  echo "each dispatch, the last logging step), largest first, against the step's time at the run's tokens/s (the"
  echo "optimizer step, the gaps between dispatches and the host are the rest). What a fusion would save shows here."
  for run in "${methods[@]}"; do
    echo
    step_ms=$(awk "BEGIN { printf \"%.2f\", $batch * $seq / ${tokens[$run]} * 1000 }")
    echo "$run (step $step_ms ms):"
    echo
    echo "| kernel | ms | % of step |"
    echo "|---|---|---|"
    grep '"kernels"' "$out/train-$run/metrics.jsonl" | tail -1 | grep -o '\["[^"]*",[0-9.eE+-]*\]' |
      tr -d '[]"' | awk -F, -v step="$step_ms" '{ printf "| %s | %.3f | %.1f |\n", $1, $2, 100 * $2 / step; sum += $2 }
        END { printf "| all kernels | %.3f | %.1f |\n", sum, 100 * sum / step }'
  done
  echo
  echo "Autotuning (\`vktune bench tune ${tune_args[*]}\`, before the kernel table's own first use):"
  echo
  echo '```'
  cat "$out/tune.txt"
  echo '```'
  echo
  echo "Matmul path of each product (\"op A.W->C rows x cols x inner: body tiles\"; coopmat = cooperative matrices):"
  for run in "${methods[@]}"; do
    echo
    echo "$run:"
    echo '```'
    cat "$out/paths-$run.txt"
    echo '```'
  done
  echo
  echo "Kernel table (\`vktune bench kernels ${kernel_args[*]}\`):"
  echo
  echo '```'
  cat "$out/kernels.txt"
  echo '```'
} > "$results"
cat "$results"
if [ "$dry_run" = 0 ]; then
  cp "$results" "$root/bench/RESULTS-$gpu_slug.md"
  log "wrote bench/RESULTS-$gpu_slug.md"
fi
log "done in $(($(date +%s) - start_all)) s; logs and $(basename "$results") in $out"
