#!/usr/bin/env bash
# NOT run by CI: a real one-node Slurm cluster on this machine (Debian's slurm-wlm + munge;
# needs root), then deploy/slurm/nino_nowcaster.sbatch and nino_train.sbatch submitted to it
# with sbatch: the nowcaster job writes its address, the trainer job (2 tasks) reads it and
# trains a short FM-16 run with NiNo steps on it. Everything lives in a temp folder; the daemons
# started here are stopped at the end (by pid).
#
#   bazel build //nowcaster:nino_nowcaster //trainer:nino_train //tools:synthetic_nino_ckpt
#   sudo bash deploy/slurm/rehearse_local_cluster.sh [--keep]
#
# Installs slurm-wlm and munge with apt-get if they are missing. The node is declared with 8
# CPUs (SlurmdParameters=config_overrides) so both jobs fit on a small machine at once.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
KEEP=0
[[ "${1:-}" == "--keep" ]] && KEEP=1
[[ $(id -u) == 0 ]] || { echo "needs root (munged, slurmd)" >&2; exit 2; }
for b in nowcaster/nino_nowcaster trainer/nino_train tools/synthetic_nino.pt; do
  [[ -e bazel-bin/$b ]] || { echo "missing bazel-bin/$b: bazel build //nowcaster:nino_nowcaster //trainer:nino_train //tools:synthetic_nino_ckpt" >&2; exit 2; }
done
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends slurm-wlm munge
fi

D=$(mktemp -d /tmp/nino_slurm_cluster.XXXXXX)
chmod 755 "$D"
mkdir -p "$D"/{state,spool,munge,log,job}
HOST=$(hostname -s)
PIDS=()
cleanup() {
  local status=$?
  set +e
  if [[ -n "${SLURM_CONF:-}" ]]; then scancel --quiet -u root 2>/dev/null; sleep 2; fi
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
  sleep 1
  for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; done
  if [[ $KEEP == 1 || $status != 0 ]]; then echo "logs kept in $D"; else rm -rf "$D"; fi
}
trap cleanup EXIT

# munge: a private key and socket (does not touch a running system munged).
dd if=/dev/urandom of="$D/munge/munge.key" bs=1024 count=1 status=none
chmod 400 "$D/munge/munge.key"
munged --key-file="$D/munge/munge.key" --socket="$D/munge/munge.socket" \
  --pid-file="$D/munge/munged.pid" --log-file="$D/log/munged.log" --seed-file="$D/munge/seed" --force
sleep 0.5
PIDS+=("$(cat "$D/munge/munged.pid")")

free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
CTLD_PORT=$(free_port); SLURMD_PORT=$(free_port)
cat >"$D/slurm.conf" <<EOF
ClusterName=ninolocal
SlurmctldHost=$HOST
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$D/munge/munge.socket
CredType=cred/munge
StateSaveLocation=$D/state
SlurmdSpoolDir=$D/spool
SlurmctldPidFile=$D/slurmctld.pid
SlurmdPidFile=$D/slurmd.pid
SlurmctldLogFile=$D/log/slurmctld.log
SlurmdLogFile=$D/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
SwitchType=switch/none
ReturnToService=2
KillWait=30
NodeName=$HOST CPUs=8 RealMemory=16000 State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
EOF
export SLURM_CONF=$D/slurm.conf
slurmctld -f "$SLURM_CONF" -i
slurmd -f "$SLURM_CONF" -N "$HOST"
for _ in $(seq 1 50); do [[ -s $D/slurmctld.pid && -s $D/slurmd.pid ]] && break; sleep 0.2; done
PIDS+=("$(cat "$D/slurmd.pid")" "$(cat "$D/slurmctld.pid")")
for _ in $(seq 1 60); do sinfo -h -o '%T' 2>/dev/null | grep -qE '^idle' && break; sleep 1; done
sinfo
sinfo -h -o '%T' | grep -qE '^idle' || { echo "the node did not become idle:"; tail -20 "$D"/log/*.log; exit 1; }

# The two jobs, as a user would submit them (from the checkout; the job folder holds the
# address file and the run).
cd "$D/job"
ADDR=$D/job/nino-nowcaster.addr
NJOB=$(sbatch --parsable --cpus-per-task=1 --mem=2G \
  --export=ALL,NINO_NOWCASTER_BIN=$ROOT/bazel-bin/nowcaster/nino_nowcaster,NINO_CKPT=$ROOT/bazel-bin/tools/synthetic_nino.pt,NINO_NOWCASTER_ADDR_FILE=$ADDR,NINO_METRICS_PORT=0,NINO_LAME_DUCK_MS=1000 \
  "$ROOT/deploy/slurm/nino_nowcaster.sbatch")
echo "nowcaster job $NJOB"
TJOB=$(sbatch --parsable --nodes=1 --ntasks-per-node=2 --cpus-per-task=1 --mem=4G --dependency=after:"$NJOB" \
  --export=ALL,NINO_TRAIN_BIN=$ROOT/bazel-bin/trainer/nino_train,NINO_NOWCASTER_ADDR_FILE=$ADDR,NINO_OUT_DIR=$D/job/run,NINO_NOWCASTER_WAIT_S=120 \
  "$ROOT/deploy/slurm/nino_train.sbatch" -- --steps=45 --period=20 --eval_every=15 --eval_limit=500 \
  --log_every=0 --stop_at_target=false --checkpoint_every=0)
echo "trainer job $TJOB (after $NJOB started)"
for _ in $(seq 1 300); do
  state=$(squeue -h -j "$TJOB" -o '%T' 2>/dev/null || true)
  [[ -z $state ]] && break
  sleep 1
done
squeue
echo "--- trainer job output"; cat "$D/job/nino-train-$TJOB.log" || true
echo "--- address file: $(cat "$ADDR" 2>/dev/null || echo absent)"
scancel "$NJOB"
for _ in $(seq 1 60); do [[ -z $(squeue -h -j "$NJOB" -o '%T' 2>/dev/null) ]] && break; sleep 1; done
echo "--- nowcaster job output"; cat "$D/job/nino-nowcaster-$NJOB.log" || true
echo "--- nowcaster daemon log (tail)"; tail -5 "$D/job/nino-nowcaster-$NJOB.daemon.log" || true
S=$(cat "$D/job/run/summary.json" 2>/dev/null || true)
echo "--- summary.json: $S"
steps=$(sed -n 's/.*"nino_steps": *\([0-9]*\).*/\1/p' <<<"$S")
failures=$(sed -n 's/.*"nino_failures": *\([0-9]*\).*/\1/p' <<<"$S")
if [[ ${steps:-0} -gt 0 && $failures == 0 && ! -e $ADDR ]]; then
  echo "REHEARSAL PASSED: real one-node Slurm, nino_steps=$steps nino_failures=$failures, address file removed at scancel"
else
  echo "REHEARSAL FAILED"; exit 1
fi
