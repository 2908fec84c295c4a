#!/usr/bin/env bash
# //deploy:slurm_standin_test: runs deploy/slurm/*.sbatch with a STAND-IN `srun` and `scontrol`
# (shell scripts on PATH, no Slurm daemons) and the environment Slurm gives a batch script.
#  1. nino_train.sbatch, 2 nodes x 2 tasks, with a stand-in nino_train that records what each
#     rank receives: RANK/WORLD_SIZE/LOCAL_RANK from SLURM_PROCID/SLURM_NTASKS/SLURM_LOCALID,
#     MASTER_ADDR = the first host of `scontrol show hostnames`, MASTER_PORT, --nowcaster from
#     the address file / NINO_NOWCASTER; no address -> status 2.
#  2. nino_nowcaster.sbatch with the real daemon (synthetic NiNo checkpoint) writes HOST:PORT to
#     the address file; nino_train.sbatch with the real nino_train (2 tasks, a short FM-16 run)
#     reads it and applies NiNo steps there; SIGTERM to the nowcaster job removes the file and
#     the daemon exits 0.
set -uo pipefail
echo "NOTE: this test uses a stand-in srun/scontrol, not Slurm (deploy/slurm/rehearse_local_cluster.sh runs a real one-node cluster)"

if [[ -n "${TEST_SRCDIR:-}" ]]; then ROOT=$TEST_SRCDIR/${TEST_WORKSPACE:-nino_service}; else ROOT=$(cd "$(dirname "$0")/../.." && pwd); fi
pick() { for c in "$ROOT/$1" "$ROOT/bazel-bin/$1"; do [[ -e $c ]] && { echo "$c"; return; }; done; echo "missing: $1" >&2; exit 1; }
NOWCASTER_BIN=$(pick nowcaster/nino_nowcaster)
TRAIN_BIN=$(pick trainer/nino_train)
CKPT=$(pick tools/synthetic_nino.pt)
SLURM_DIR=$ROOT/deploy/slurm
TMP=$(mktemp -d "${TEST_TMPDIR:-/tmp}/nino_slurm_standin.XXXXXX")
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; done; rm -rf "$TMP"; }
trap cleanup EXIT
FAILS=0
fail() { echo "FAIL: $*"; FAILS=$((FAILS + 1)); }
ok() { echo "ok: $*"; }

# --- the stand-ins -----------------------------------------------------------------------------
mkdir -p "$TMP/bin"
cat >"$TMP/bin/scontrol" <<'EOF'
#!/usr/bin/env bash
# STAND-IN scontrol: only `show hostnames LIST`; prints $STANDIN_HOSTS (comma-separated) one per line.
[[ "$1 $2" == "show hostnames" ]] || { echo "stand-in scontrol: unsupported: $*" >&2; exit 1; }
echo "scontrol $*" >>"$STANDIN_LOG"
tr , "\n" <<<"$STANDIN_HOSTS"
EOF
cat >"$TMP/bin/srun" <<'EOF'
#!/usr/bin/env bash
# STAND-IN srun: starts --ntasks (else $SLURM_NTASKS) copies of the command with SLURM_PROCID,
# SLURM_LOCALID, SLURM_NODEID set as srun would for --ntasks-per-node=$STANDIN_TASKS_PER_NODE;
# exports the caller's environment (srun's default --export=ALL); forwards TERM / INT to the
# tasks and, as srun does, still waits for them to exit; worst status.
echo "srun $*" >>"$STANDIN_LOG"
n=${SLURM_NTASKS:-1}
while [[ $# -gt 0 && $1 == --* ]]; do
  case $1 in --ntasks=*) n=${1#*=} ;; esac
  shift
done
per=${STANDIN_TASKS_PER_NODE:-$n}
(( per > n )) && per=$n
pids=()
for ((i = 0; i < n; i++)); do
  SLURM_PROCID=$i SLURM_LOCALID=$((i % per)) SLURM_NODEID=$((i / per)) SLURM_NTASKS=$n SLURM_STEP_NUM_TASKS=$n "$@" &
  pids+=($!)
done
trap 'kill -TERM "${pids[@]}" 2>/dev/null' TERM INT
status=0
for p in "${pids[@]}"; do
  while true; do  # a trapped signal interrupts wait while the task still runs: wait again
    wait "$p"
    s=$?
    kill -0 "$p" 2>/dev/null || break
  done
  ((s != 0)) && status=$s
done
exit $status
EOF
cat >"$TMP/bin/fake_nino_train" <<'EOF'
#!/usr/bin/env bash
# Records what one rank receives.
{ echo "RANK=$RANK"; echo "WORLD_SIZE=$WORLD_SIZE"; echo "LOCAL_RANK=$LOCAL_RANK"
  echo "MASTER_ADDR=$MASTER_ADDR"; echo "MASTER_PORT=$MASTER_PORT"; echo "ARGS=$*"; } >"$DUMP_DIR/rank$RANK.txt"
EOF
chmod +x "$TMP/bin/"*
export PATH=$TMP/bin:$PATH STANDIN_LOG=$TMP/standin.log
slurm_env() {  # the environment of a batch script of job $1 on nodes $2 (a,b), $3 tasks per node
  local hosts=(${2//,/ })
  echo SLURM_JOB_ID=$1 SLURM_JOB_NODELIST=standin[01-0${#hosts[@]}] SLURM_NNODES=${#hosts[@]} \
       SLURM_NTASKS=$(( ${#hosts[@]} * $3 )) SLURM_CPUS_PER_TASK=1 SLURM_SUBMIT_DIR=$TMP \
       STANDIN_HOSTS=$2 STANDIN_TASKS_PER_NODE=$3
}

# --- 1. the environment of each rank -------------------------------------------------------------
mkdir -p "$TMP/dump"
echo "nodeX:12345" >"$TMP/nino-nowcaster.addr"
env $(slurm_env 4242 standin01,standin02 2) DUMP_DIR=$TMP/dump NINO_TRAIN_BIN=$TMP/bin/fake_nino_train \
  bash "$SLURM_DIR/nino_train.sbatch" -- --eval_every=7 >"$TMP/train1.log" 2>&1 || fail "nino_train.sbatch exited $?: $(cat "$TMP/train1.log")"
for r in 0 1 2 3; do
  f=$TMP/dump/rank$r.txt
  [[ -f $f ]] || { fail "rank $r did not run"; continue; }
  want="RANK=$r WORLD_SIZE=4 LOCAL_RANK=$((r % 2)) MASTER_ADDR=standin01 MASTER_PORT=29742"
  got=$(head -n5 "$f" | tr '\n' ' ' | sed 's/ $//')
  [[ "$got" == "$want" ]] && ok "rank $r: $got" || fail "rank $r: got '$got', want '$want'"
  grep -q -- "--nowcaster=nodeX:12345" "$f" || fail "rank $r: no --nowcaster from the address file: $(cat "$f")"
  grep -q -- "--threads=1 " "$f" || fail "rank $r: --threads is not SLURM_CPUS_PER_TASK"
  grep -q -- "--eval_every=7" "$f" || fail "rank $r: extra flags not passed"
done
grep -q "srun --kill-on-bad-exit=1" "$STANDIN_LOG" && ok "srun --kill-on-bad-exit=1" || fail "srun without --kill-on-bad-exit"
# NINO_NOWCASTER wins over the file; MASTER_PORT from the environment wins.
rm -f "$TMP/dump/"*
env $(slurm_env 7 "a1" 1) DUMP_DIR=$TMP/dump NINO_TRAIN_BIN=$TMP/bin/fake_nino_train NINO_NOWCASTER=other:1 MASTER_PORT=30001 \
  bash "$SLURM_DIR/nino_train.sbatch" >"$TMP/train2.log" 2>&1
grep -q -- "--nowcaster=other:1" "$TMP/dump/rank0.txt" && grep -q "MASTER_PORT=30001" "$TMP/dump/rank0.txt" \
  && ok "NINO_NOWCASTER and MASTER_PORT override" || fail "overrides: $(cat "$TMP/dump/rank0.txt" "$TMP/train2.log")"
# No address at all: refuses to start.
rm -f "$TMP/nino-nowcaster.addr"
env $(slurm_env 8 "a1" 1) DUMP_DIR=$TMP/dump NINO_TRAIN_BIN=$TMP/bin/fake_nino_train NINO_NOWCASTER_WAIT_S=1 \
  bash "$SLURM_DIR/nino_train.sbatch" >"$TMP/train3.log" 2>&1
code=$?
[[ $code == 2 ]] && ok "no nowcaster address -> status 2" || fail "no nowcaster address: status $code: $(cat "$TMP/train3.log")"

# --- 2. both scripts with the real binaries ------------------------------------------------------
env $(slurm_env 51 "localhost" 1) NINO_NOWCASTER_BIN=$NOWCASTER_BIN NINO_CKPT=$CKPT NINO_METRICS_PORT=0 NINO_LAME_DUCK_MS=0 \
  bash "$SLURM_DIR/nino_nowcaster.sbatch" -- --allow_download=false >"$TMP/nowcaster_job.log" 2>&1 &
NJOB=$!
PIDS+=($NJOB)
for _ in $(seq 1 600); do [[ -s $TMP/nino-nowcaster.addr ]] && break; kill -0 $NJOB 2>/dev/null || break; sleep 0.1; done
ADDR=$(cat "$TMP/nino-nowcaster.addr" 2>/dev/null)
if [[ $ADDR =~ ^localhost:[0-9]+$ ]]; then
  ok "nowcaster job wrote $ADDR"
  env $(slurm_env 52 "localhost" 2) NINO_TRAIN_BIN=$TRAIN_BIN NINO_OUT_DIR=$TMP/run \
    bash "$SLURM_DIR/nino_train.sbatch" -- --steps=45 --period=20 --eval_every=15 --eval_limit=500 \
    --log_every=0 --stop_at_target=false --checkpoint_every=0 >"$TMP/train_real.log" 2>&1
  code=$?
  S=$(cat "$TMP/run/summary.json" 2>/dev/null)
  steps=$(sed -n 's/.*"nino_steps": *\([0-9]*\).*/\1/p' <<<"$S")
  failures=$(sed -n 's/.*"nino_failures": *\([0-9]*\).*/\1/p' <<<"$S")
  if [[ $code == 0 && ${steps:-0} -gt 0 && $failures == 0 ]]; then
    ok "2 real ranks: nino_steps=$steps nino_failures=$failures"
  else
    fail "real run: status $code, summary '$S'; $(tail -20 "$TMP/train_real.log"); $(ls "$TMP"); $(tail -5 "$TMP"/nino-nowcaster-51.daemon.log)"
  fi
else
  fail "no address file from nino_nowcaster.sbatch: '$ADDR'; $(cat "$TMP/nowcaster_job.log")"
fi
kill -TERM $NJOB 2>/dev/null
wait $NJOB
code=$?
[[ $code == 0 ]] && ok "nowcaster job: SIGTERM -> status 0" || fail "nowcaster job exited $code: $(cat "$TMP/nowcaster_job.log")"
[[ ! -e $TMP/nino-nowcaster.addr ]] && ok "address file removed" || fail "address file left behind"
grep -q "stopped" "$TMP"/nino-nowcaster-51.daemon.log && ok "the daemon drained and stopped" || fail "daemon log: $(tail -5 "$TMP"/nino-nowcaster-51.daemon.log)"

echo
if [[ $FAILS -gt 0 ]]; then echo "$FAILS checks FAILED (stand-in srun/scontrol)"; exit 1; fi
echo "PASSED (with a STAND-IN srun/scontrol, not Slurm)"
