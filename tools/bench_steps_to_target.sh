#!/usr/bin/env bash
# Steps to target, Adam vs NiNo, per seed (long: not part of the test suite).
#   tools/bench_steps_to_target.sh [TASK] [SEEDS...]        e.g. tools/bench_steps_to_target.sh fm16 1000 2000 3000
# Environment: NINO_CKPT (default: ../shared/reference/checkpoints/nino_no_posw.pt), OUT (runs/bench),
# STEPS (10000), EVAL_EVERY (50), PARALLEL (2: Adam and NiNo of a seed side by side, 1 thread each).
set -euo pipefail
cd "$(dirname "$0")/.."
TASK=${1:-fm16}; shift || true
SEEDS=${*:-1000 2000 3000}
CKPT=${NINO_CKPT:-$(realpath ../shared/reference/checkpoints/nino_no_posw.pt)}
OUT=${OUT:-runs/bench}
STEPS=${STEPS:-10000}
EVAL_EVERY=${EVAL_EVERY:-50}
BIN=./bazel-bin/trainer/nino_train
[ -x "$BIN" ] || bazel build //trainer:nino_train
mkdir -p "$OUT"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $(date -u)"
for seed in $SEEDS; do
  common=(--task="$TASK" --seed="$seed" --steps="$STEPS" --eval_every="$EVAL_EVERY" --log_every=1000 --threads=1 --resume=false)
  echo "+ $BIN ${common[*]} --out_dir=$OUT/$TASK-adam-s$seed"
  echo "+ $BIN ${common[*]} --nino_ckpt=$CKPT --out_dir=$OUT/$TASK-nino-s$seed"
  $BIN "${common[@]}" --out_dir="$OUT/$TASK-adam-s$seed" > "$OUT/$TASK-adam-s$seed.log" 2>&1 &
  a=$!
  $BIN "${common[@]}" --nino_ckpt="$CKPT" --out_dir="$OUT/$TASK-nino-s$seed" > "$OUT/$TASK-nino-s$seed.log" 2>&1 &
  n=$!
  wait $a; wait $n
  python3 - "$OUT" "$TASK" "$seed" <<'PY'
import json, sys
out, task, seed = sys.argv[1:]
a = json.load(open(f"{out}/{task}-adam-s{seed}/summary.json"))
n = json.load(open(f"{out}/{task}-nino-s{seed}/summary.json"))
def fmt(s): return str(s["reached_at"]) if s["reached_at"] >= 0 else f">{s['steps_done']}"
ratio = (n["reached_at"] / a["reached_at"]) if a["reached_at"] > 0 and n["reached_at"] > 0 else float("nan")
m = [k for k in a if k.startswith("best_")][0]
print(f"RESULT task={task} seed={seed} adam={fmt(a)} nino={fmt(n)} ratio={ratio:.3f} "
      f"adam_{m}={a[m]:.2f} nino_{m}={n[m]:.2f} nino_steps={n['nino_steps']} failures={n['nino_failures']}")
PY
done
python3 tools/plot_runs.py "$OUT/$TASK-curves.png" $(for s in $SEEDS; do echo "Adam-s$s=$OUT/$TASK-adam-s$s NiNo-s$s=$OUT/$TASK-nino-s$s"; done) --title "$TASK: Adam vs NiNo (eval every $EVAL_EVERY steps)" || true
