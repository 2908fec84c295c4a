#!/usr/bin/env bash
# Records Adam trajectories for NiNo meta-training (shared/spec/META_TRAINING.md sections 1-2):
# many nino_train runs of one task, seeds and learning rates varied around the task's default,
# each into <out>/<task>-s<seed>-lr<lr>/ (trajectory) and <out>/runs/... (its run folder).
#
#   bash tools/collect_trajectories.sh --task fm16 --runs 40 [--steps 10750] [--out data/trajectories]
#                                      [--jobs 2] [--first_seed 100000] [--kernel_size 5]
#
# Stop it at any time (Ctrl-C, a kill, a reboot) and start it again with the same arguments:
# finished runs are skipped (their manifest says complete), an interrupted run resumes from its
# last checkpoint (every 500 steps) and its trajectory continues from there. Seeds start at
# 100000, so the evaluation seeds (1000, 2000, 3000, ...) are never seen in meta-training.
# Learning rates cycle through 0.5x, 0.75x, 1x, 1.5x, 2x the task's default. --kernel_size K
# (fm16 / fm32) records the same nets with K x K kernels into <task>k<K>-s<seed>-lr<lr>/, the
# data of NiNo models with K*K feature slots per edge (nino_metatrain --max_feat_size).
# `nino_trajectories check <out>` verifies the result.
set -euo pipefail
cd "$(dirname "$0")/.."
TASK=fm16; RUNS=10; STEPS=""; OUT=data/trajectories; JOBS=1; FIRST_SEED=100000; KERNEL=0
while [ $# -gt 0 ]; do
  case "$1" in
    --task) TASK="$2"; shift 2 ;;
    --runs) RUNS="$2"; shift 2 ;;
    --steps) STEPS="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --jobs) JOBS="$2"; shift 2 ;;
    --first_seed) FIRST_SEED="$2"; shift 2 ;;
    --kernel_size) KERNEL="$2"; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
case "$TASK" in
  fm16|fm32) BASE_LR=6e-3; STEPS=${STEPS:-10750} ;;  # 2688 states x 4 steps, as the official data
  mlp) BASE_LR=1e-3; STEPS=${STEPS:-10750} ;;
  lm) BASE_LR=1e-3; STEPS=${STEPS:-24800} ;;         # 124 states x 200 steps
  *) echo "unknown task $TASK" >&2; exit 2 ;;
esac
bazel build //trainer:nino_train //tools:nino_trajectories >/dev/null
BIN=./bazel-bin/trainer/nino_train
mkdir -p "$OUT/runs"
MULTS=(0.5 0.75 1 1.5 2)

run_one() {
  local i=$1 seed lr name
  seed=$((FIRST_SEED + i))
  lr=$(awk -v b="$BASE_LR" -v m="${MULTS[$((i % 5))]}" 'BEGIN { printf "%.6g", b * m }')
  name="$TASK-s$seed-lr$lr"
  [ "$KERNEL" = 0 ] || name="${TASK}k$KERNEL-s$seed-lr$lr"
  if grep -q '"complete": true' "$OUT/$name/manifest.json" 2>/dev/null; then
    echo "skip $name (complete)"; return 0
  fi
  echo "run  $name"
  "$BIN" --task "$TASK" --kernel_size "$KERNEL" --seed "$seed" --lr "$lr" --steps "$STEPS" \
    --threads 1 --quiet \
    --stop_at_target=false --eval_every 500 --checkpoint_every 500 \
    --out_dir "$OUT/runs/$name" --record_dir "$OUT/$name" >"$OUT/runs/$name.log" 2>&1 \
    || { echo "FAILED $name (see $OUT/runs/$name.log)"; return 1; }
  echo "done $name"
}
export -f run_one
export TASK BASE_LR STEPS OUT FIRST_SEED BIN KERNEL
export MULTS_STR="${MULTS[*]}"
seq 0 $((RUNS - 1)) | xargs -P "$JOBS" -I{} bash -c 'MULTS=($MULTS_STR); run_one {}'
./bazel-bin/tools/nino_trajectories list "$OUT"
