#!/usr/bin/env bash
# 1 vs 2 ranks on this machine: `vktune train` on the bundled base model (LoRA r16, all-linear),
# once alone and twice under mpirun (same global batch, and twice the global batch). Prints the
# throughput and the all-reduce time per step from each run's metrics.jsonl (bench/data_parallel.md).
# Usage: bench/data_parallel.sh [STEPS] (default 20); needs a build with MPI and mpirun on PATH.
# MPICH: MPIRUN=mpiexec.mpich VKTUNE=build-mpich/vktune bench/data_parallel.sh. Extra train flags for every
# run: TRAIN_FLAGS="--ddp-bucket-cap-mb 0" (one bucket after the backward: the sums not overlapped).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
vktune="${VKTUNE:-$root/build/vktune}"
steps="${1:-20}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
python3 - "$work/data.jsonl" <<'PY'
import json, random, sys
random.seed(3)
things = ["sky", "sea", "leaf", "sun", "stone", "river"]
with open(sys.argv[1], "w") as out:
    for i in range(256):
        t = random.choice(things)
        out.write(json.dumps({"prompt": f"Q: what colour is the {t}? ", "completion": f"The {t} is as it was made."}) + "\n")
PY
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mpirun=(${MPIRUN:-mpirun})
if "${mpirun[0]}" --version 2>&1 | grep -q "Open MPI"; then mpirun+=(--oversubscribe --allow-run-as-root); fi
train=(train --model "$root/examples/base" --data "$work/data.jsonl" --headless --max-steps "$steps" --logging-steps 5
  --save-steps 0 --lora-r 16 --target-modules all-linear --learning-rate 1e-3 --seed 7 ${TRAIN_FLAGS:-})
run() {  # NAME LAUNCHER... -- FLAGS...
  local name="$1"; shift
  local launcher=()
  while [ "$1" != -- ]; do launcher+=("$1"); shift; done; shift
  "${launcher[@]}" "$vktune" "${train[@]}" --output-dir "$work/$name" "$@" >"$work/$name.log" 2>&1
  python3 - "$work/$name/metrics.jsonl" "$name" <<'PY'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1]) if '"grad_norm"' in l]
# Windows of 5 steps (a logged step is profiled, and sums after its whole backward: 1 in 5 here);
# the first window records the pipelines.
windows = len(lines) - 1
tokens = lines[-1]["tokens"] - lines[0]["tokens"] + 0.0
seconds = sum(l["step_time_s"] * 5 for l in lines[1:])
allreduce = sum(l.get("all_reduce_s", 0.0) for l in lines[1:]) / max(1, windows)
busy = sum(l.get("all_reduce_busy_s", 0.0) for l in lines[1:]) / max(1, windows)
step = seconds / max(1, 5 * windows)
print(f"{sys.argv[2]:28} {tokens / seconds:9.0f} tok/s  {step * 1000:7.1f} ms/step  all-reduce {busy * 1000:6.2f} ms, "
      f"exposed {allreduce * 1000:6.2f} ms ({allreduce / step:5.1%})")
PY
}
run "1 rank, batch 4" -- --per-device-train-batch-size 4
run "2 ranks, batch 2 (same)" "${mpirun[@]}" -np 2 -- --per-device-train-batch-size 2
run "2 ranks, batch 4 (2x)" "${mpirun[@]}" -np 2 -- --per-device-train-batch-size 4
run "2 ranks, batch 2, sharded" "${mpirun[@]}" -np 2 -- --per-device-train-batch-size 2 \
  --shard-optimizer
# ZeRO-1: rank 0's optimizer states, planned and measured (the ledger rows of each run's summary).
for name in "1 rank, batch 4" "2 ranks, batch 2 (same)" "2 ranks, batch 2, sharded"; do
  printf '%-28s %s\n' "$name" "$(grep -m1 'optimizer_state ' "$work/$name.log")"
done
