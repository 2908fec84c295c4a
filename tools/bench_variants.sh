#!/usr/bin/env bash
# Steps to target for several NiNo variants on the same seeds (long: not part of the test suite).
#
#   tools/bench_variants.sh TASK "SEEDS" NAME='nino_train flags' [NAME='flags' ...]
#   e.g. tools/bench_variants.sh fm16 "1000 2000 3000" \
#          ours='--nino_ckpt=default' \
#          wnn_official='--nino_ckpt=nino_mlp' \
#          search='--nino_ckpt=nino_no_posw --nino_step_search=1,0.5,0.25,0'
#
# Same protocol as tools/bench_steps_to_target.sh (docs/BENCHMARKS.md section 3): --threads 1,
# the full test set every EVAL_EVERY (50) steps, a 10,000-step schedule. Each run goes to
# $OUT/TASK-NAME-sSEED (a finished run, with summary.json, is not run again); PARALLEL (1) runs
# at once. Prints one RESULT line per run and a table per variant at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
TASK=$1; SEEDS=$2; shift 2
OUT=${OUT:-runs/bench}
STEPS=${STEPS:-10000}
EVAL_EVERY=${EVAL_EVERY:-50}
PARALLEL=${PARALLEL:-1}
BIN=${BIN:-./bazel-bin/trainer/nino_train}
[ -x "$BIN" ] || bazel build //trainer:nino_train
mkdir -p "$OUT"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $(date -u)"

run_one() {  # name seed flags...
  local name=$1 seed=$2; shift 2
  local dir="$OUT/$TASK-$name-s$seed"
  [ -f "$dir/summary.json" ] && return 0
  echo "+ $BIN --task=$TASK --seed=$seed --steps=$STEPS --eval_every=$EVAL_EVERY --threads=1 $* --out_dir=$dir"
  # shellcheck disable=SC2068
  "$BIN" --task="$TASK" --seed="$seed" --steps="$STEPS" --eval_every="$EVAL_EVERY" \
    --log_every=1000 --threads=1 --quiet $@ --out_dir="$dir" >"$dir.log" 2>&1 ||
    echo "FAILED $dir (see $dir.log)"
}

jobs_running() { jobs -rp | wc -l; }
for spec in "$@"; do
  name=${spec%%=*}; flags=${spec#*=}
  for seed in $SEEDS; do
    while [ "$(jobs_running)" -ge "$PARALLEL" ]; do sleep 5; done
    # shellcheck disable=SC2086
    run_one "$name" "$seed" $flags &
  done
done
wait

python3 - "$OUT" "$TASK" "$SEEDS" "$@" <<'PY'
import json, os, sys
out, task, seeds, specs = sys.argv[1], sys.argv[2], sys.argv[3].split(), sys.argv[4:]
for spec in specs:
    name = spec.split("=", 1)[0]
    cells = []
    for seed in seeds:
        path = f"{out}/{task}-{name}-s{seed}/summary.json"
        if not os.path.exists(path):
            cells.append("missing"); continue
        s = json.load(open(path))
        reached = s["reached_at"]
        cell = str(reached) if reached >= 0 else f">{s['steps_done']}"
        metric = [k for k in s if k.startswith("best_")][0]
        print(f"RESULT task={task} variant={name} seed={seed} steps_to_target={cell} "
              f"{metric}={s[metric]:.2f} nino_steps={s.get('nino_steps')} "
              f"failures={s.get('nino_failures')}")
        cells.append(cell)
    print(f"| {name} | " + " | ".join(cells) + " |")
PY
