#!/usr/bin/env bash
# The main job on one machine: a nino_nowcaster daemon on 127.0.0.1 and N nino_train workers
# (torchrun-style environment) training FM-16 data-parallel; every NiNo step runs on the
# nowcaster (rank 0 streams the parameter snapshots to it and the prediction is broadcast).
#
#   bash deploy/local_demo.sh [--workers N] [--steps N] [--seed N] [--eval_every N]
#                             [--period N] [--nino_model NAME|PATH] [--out_dir DIR]
#                             [-- nino_train flags]
#
# --nino_model (alias --nino_ckpt) is handed to the nowcaster: an official name (nino_no_posw,
# nino_mlp, nino_mlp_h32: per-user cache, download, ../shared) or a checkpoint file. Without it
# the nowcaster serves the project's own model, built into the binary: no network, no ../shared.
set -euo pipefail
cd "$(dirname "$0")/.."

WORKERS=2
STEPS=3000
SEED=1000
EVAL_EVERY=100
PERIOD=1000
NINO_CKPT=""
OUT_DIR=""
EXTRA=()
usage() { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --workers) WORKERS="$2"; shift 2 ;;
    --workers=*) WORKERS="${1#*=}"; shift ;;
    --steps) STEPS="$2"; shift 2 ;;
    --steps=*) STEPS="${1#*=}"; shift ;;
    --seed) SEED="$2"; shift 2 ;;
    --seed=*) SEED="${1#*=}"; shift ;;
    --eval_every) EVAL_EVERY="$2"; shift 2 ;;
    --eval_every=*) EVAL_EVERY="${1#*=}"; shift ;;
    --period) PERIOD="$2"; shift 2 ;;
    --period=*) PERIOD="${1#*=}"; shift ;;
    --nino_ckpt|--nino_model) NINO_CKPT="$2"; shift 2 ;;
    --nino_ckpt=*|--nino_model=*) NINO_CKPT="${1#*=}"; shift ;;
    --out_dir) OUT_DIR="$2"; shift 2 ;;
    --out_dir=*) OUT_DIR="${1#*=}"; shift ;;
    --) shift; EXTRA=("$@"); break ;;
    -h|--help) usage; exit 0 ;;
    *) echo "local_demo.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
done
if ! [[ "$WORKERS" =~ ^[1-9][0-9]*$ ]]; then echo "--workers must be a positive integer" >&2; exit 2; fi
case "$NINO_CKPT" in
  ""|default|nino_no_posw|nino_mlp|nino_mlp_h32) ;;
  *) [[ -f "$NINO_CKPT" ]] || { echo "--nino_model: no file $NINO_CKPT" >&2; exit 2; } ;;
esac

bash tools/setup.sh
bazel build //nowcaster:nino_nowcaster //trainer:nino_train
NOWCASTER_BIN=./bazel-bin/nowcaster/nino_nowcaster
TRAIN_BIN=./bazel-bin/trainer/nino_train

[[ -n "$OUT_DIR" ]] || OUT_DIR="runs/fm16-nowcaster-s${SEED}-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$OUT_DIR"
NOWCASTER_LOG="$OUT_DIR/nowcaster.log"

NOWCASTER_PID=""
WORKER_PIDS=()
cleanup() {
  local pid
  for pid in "${WORKER_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${WORKER_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  WORKER_PIDS=()
  if [[ -n "$NOWCASTER_PID" ]]; then
    kill -TERM "$NOWCASTER_PID" 2>/dev/null || true
    wait "$NOWCASTER_PID" 2>/dev/null || true
    NOWCASTER_PID=""
  fi
}
trap cleanup EXIT
trap 'echo "interrupted: stopping the workers and the nowcaster" >&2; exit 130' INT TERM

# A free TCP port on 127.0.0.1 for the workers' rendezvous.
free_port() {
  local p
  for _ in $(seq 1 200); do
    p=$((20000 + RANDOM % 30000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return 0; fi
  done
  echo "no free port found" >&2
  return 1
}

# 1. The nowcaster: port 0 = a free port, which it prints once it is serving.
NOWCASTER_ARGS=(--address=127.0.0.1:0 --metrics_port=0 --lame_duck_ms=0)
[[ -n "$NINO_CKPT" ]] && NOWCASTER_ARGS+=("--nino_model=$NINO_CKPT")
echo "starting nino_nowcaster (log: $NOWCASTER_LOG)"
"$NOWCASTER_BIN" "${NOWCASTER_ARGS[@]}" >"$NOWCASTER_LOG" 2>&1 &
NOWCASTER_PID=$!
PORT=""
for _ in $(seq 1 1200); do  # up to 120 s (a first run may download the checkpoint)
  PORT=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9][0-9]*\).*/\1/p' "$NOWCASTER_LOG" | head -n1)
  [[ -n "$PORT" ]] && break
  if ! kill -0 "$NOWCASTER_PID" 2>/dev/null; then
    echo "nino_nowcaster failed to start:" >&2
    cat "$NOWCASTER_LOG" >&2
    NOWCASTER_PID=""
    exit 1
  fi
  sleep 0.1
done
if [[ -z "$PORT" ]]; then echo "nino_nowcaster did not come up in 120 s:" >&2; cat "$NOWCASTER_LOG" >&2; exit 1; fi
# It reports "listening" after its health service turned SERVING.
echo "nino_nowcaster is serving on 127.0.0.1:$PORT (health SERVING; $(grep -o 'models: .*' "$NOWCASTER_LOG" | head -n1))"

# 2. The workers, torchrun-style; rank 0 prints progress, the others log to files.
MASTER_PORT=$(free_port)
echo "starting $WORKERS nino_train workers: FM-16, $STEPS steps, NiNo every $PERIOD steps on the nowcaster, run folder $OUT_DIR"
for ((r = 0; r < WORKERS; r++)); do
  env RANK=$r LOCAL_RANK=$r WORLD_SIZE=$WORKERS MASTER_ADDR=127.0.0.1 MASTER_PORT=$MASTER_PORT \
    "$TRAIN_BIN" --task fm16 --steps "$STEPS" --seed "$SEED" --eval_every "$EVAL_EVERY" \
    --log_every "$EVAL_EVERY" --period "$PERIOD" --nowcaster "127.0.0.1:$PORT" \
    --out_dir "$OUT_DIR" ${EXTRA[@]+"${EXTRA[@]}"} \
    > >(if [[ $r -eq 0 ]]; then tee "$OUT_DIR/rank$r.log"; else cat >"$OUT_DIR/rank$r.log"; fi) 2>&1 &
  WORKER_PIDS+=($!)
done
STATUS=0
for pid in "${WORKER_PIDS[@]}"; do wait "$pid" || STATUS=$?; done
WORKER_PIDS=()

# 3. Stop the nowcaster (SIGTERM: drain, exit 0).
kill -TERM "$NOWCASTER_PID" 2>/dev/null || true
wait "$NOWCASTER_PID" || echo "nino_nowcaster exited with status $?" >&2
NOWCASTER_PID=""

echo
if [[ $STATUS -ne 0 ]]; then
  echo "a worker failed (exit $STATUS); logs: $OUT_DIR/rank*.log, $NOWCASTER_LOG" >&2
  exit "$STATUS"
fi
echo "run folder:   $OUT_DIR"
echo "metrics:      $OUT_DIR/metrics.jsonl (evaluations, progress, NiNo steps)"
echo "summary:      $OUT_DIR/summary.json"
echo "logs:         $OUT_DIR/rank*.log, $NOWCASTER_LOG"
[[ -f "$OUT_DIR/summary.json" ]] && cat "$OUT_DIR/summary.json"
echo "plot:         python3 tools/plot_runs.py curves.png NiNo=$OUT_DIR"
