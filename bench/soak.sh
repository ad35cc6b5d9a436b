#!/usr/bin/env bash
# Soak test of stop-and-resume (not in CI): a tiny LoRA run on examples/base, N times, each
# interrupted once at a random moment by kill -9, SIGTERM or a full disk, then resumed with
# --resume-from-checkpoint latest until it finishes; its final adapter must be byte-identical to
# an uninterrupted run's. Prints one line per trial and "identical: K / N" with the seeds of the
# failures (rerun one with --seed SEED --runs 1).
#   bench/soak.sh [--runs 200] [--seed 1] [--work build/soak] [--vktune build/vktune]
# Disk full: as root, the output folder is a tmpfs capped at a random size below what the run
# writes (raised after the failure, so the resume has room); otherwise metrics.jsonl is a symlink
# to /dev/full for the first attempt.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
runs=200 seed=1 work="$root/build/soak" vktune="${VKTUNE:-$root/build/vktune}"
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs="$2"; shift 2 ;;
    --seed) seed="$2"; shift 2 ;;
    --work) work="$2"; shift 2 ;;
    --vktune) vktune="$2"; shift 2 ;;
    *) echo "usage: bench/soak.sh [--runs N] [--seed S] [--work DIR] [--vktune PATH]" >&2; exit 2 ;;
  esac
done
[ -x "$vktune" ] || { echo "soak: no $vktune (scripts/build.sh builds it)" >&2; exit 2; }
mkdir -p "$work"
# 12 steps, a checkpoint every 2: an interruption usually lands between checkpoints, so the resume
# repeats steps; shuffling makes the data position part of what must be restored.
train_args=(train --model "$root/examples/base" --data "$root/examples/demo/train.jsonl" --method lora --lora-r 4
  --target-modules q_proj,v_proj --max-length 64 --per-device-train-batch-size 2 --max-steps 12 --save-steps 2
  --logging-steps 1 --seed 3 --shuffle --headless --resume-from-checkpoint latest)
max_steps=12  # as --max-steps above
can_mount=0
if [ "$(id -u)" -eq 0 ]; then
  mkdir -p "$work/mount-probe"
  if mount -t tmpfs -o size=1m tmpfs "$work/mount-probe" 2>/dev/null; then
    umount "$work/mount-probe" && can_mount=1
  fi
fi
mounted=""
cleanup() { [ -z "$mounted" ] || umount "$mounted" 2>/dev/null || true; }
trap cleanup EXIT

# The uninterrupted run: the expected adapter, its duration and how much it writes.
reference="$work/reference"
if [ ! -f "$reference/adapter_model.safetensors" ]; then
  rm -rf "$reference"
  start=$(date +%s.%N)
  "$vktune" "${train_args[@]}" --output-dir "$reference" >"$work/reference.log" 2>&1 ||
    { echo "soak: the uninterrupted run failed, see $work/reference.log" >&2; exit 1; }
  awk "BEGIN { print $(date +%s.%N) - $start }" >"$work/reference.seconds"
fi
ref_seconds=$(cat "$work/reference.seconds")
ref_kib=$(du -sk "$reference" | cut -f1)
echo "soak: $runs trials from seed $seed; uninterrupted run ${ref_seconds}s, writes ${ref_kib} KiB;" \
  "disk full by $([ $can_mount = 1 ] && echo "a capped tmpfs" || echo "metrics.jsonl -> /dev/full")"

identical=0 interrupted=0 failures=()
for ((trial = 0; trial < runs; trial++)); do
  trial_seed=$((seed + trial))
  RANDOM=$trial_seed
  out="$work/trial"
  cleanup; mounted=""
  rm -rf "$out" && mkdir -p "$out"
  kinds=(kill9 sigterm diskfull)
  kind=${kinds[RANDOM % 3]}
  # A random moment: after a random number of finished steps (0: during start-up, so a kill
  # before the first checkpoint must restart cleanly too), plus up to half a second.
  after_steps=$((RANDOM % max_steps))
  delay=$(awk -v r=$RANDOM 'BEGIN { printf "%.2f", r / 32768 * 0.5 }')
  log="$work/trial-$trial_seed.log"
  : >"$log"
  case "$kind" in
    kill9 | sigterm)
      "$vktune" "${train_args[@]}" --output-dir "$out" >>"$log" 2>&1 &
      pid=$!
      while kill -0 "$pid" 2>/dev/null &&
        [ "$( (cat "$out/metrics.jsonl" 2>/dev/null || true) | grep -c '"loss"' || true)" -lt "$after_steps" ]; do
        sleep 0.02
      done
      sleep "$delay"
      kill -s "$([ $kind = kill9 ] && echo KILL || echo TERM)" "$pid" 2>/dev/null || true
      rc=0
      { wait "$pid"; } 2>/dev/null || rc=$?
      what="$kind after step $after_steps + ${delay}s"
      ;;
    diskfull)
      if [ $can_mount = 1 ]; then
        cap_kib=$((16 + RANDOM % (ref_kib > 16 ? ref_kib - 16 : 1)))
        mount -t tmpfs -o size=${cap_kib}k tmpfs "$out" && mounted="$out"
        what="disk full at ${cap_kib} KiB"
      else
        ln -s /dev/full "$out/metrics.jsonl"
        what="metrics.jsonl on /dev/full"
      fi
      rc=0
      "$vktune" "${train_args[@]}" --output-dir "$out" >>"$log" 2>&1 || rc=$?
      if [ -n "$mounted" ]; then mount -o remount,size=1g "$out"; else rm -f "$out/metrics.jsonl"; fi
      ;;
  esac
  [ $rc -ne 0 ] && interrupted=$((interrupted + 1))
  result="exit $rc"
  # Resume until the run says it is done (at most 3 more attempts: a resume that cannot finish
  # is a failure, not a loop).
  attempts=0
  while [ $rc -ne 0 ] && [ $attempts -lt 3 ]; do
    attempts=$((attempts + 1))
    resumed_from=$( (ls -d "$out"/checkpoint-* 2>/dev/null || true) | grep -E 'checkpoint-[0-9]+$' | sed 's/.*checkpoint-//' | sort -n | tail -1 || true)
    rc=0
    echo "---- resume $attempts" >>"$log"
    "$vktune" "${train_args[@]}" --output-dir "$out" >>"$log" 2>&1 || rc=$?
    result+=", resumed from ${resumed_from:+checkpoint-}${resumed_from:-scratch} -> exit $rc"
  done
  if [ $rc -eq 0 ] && cmp -s "$out/adapter_model.safetensors" "$reference/adapter_model.safetensors" &&
    cmp -s "$out/adapter_config.json" "$reference/adapter_config.json"; then
    identical=$((identical + 1))
    verdict="identical"
    rm -f "$log"
  else
    verdict="DIFFERENT or unfinished (log: $log)"
    failures+=("$trial_seed ($what)")
  fi
  echo "trial $((trial + 1))/$runs seed $trial_seed: $what: $result: $verdict"
done
cleanup; mounted=""
echo "identical: $identical / $runs ($interrupted interrupted before finishing)"
if [ ${#failures[@]} -gt 0 ]; then
  echo "failures (seed): ${failures[*]}"
  exit 1
fi
