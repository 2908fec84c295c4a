#!/usr/bin/env bash
# The C++ and the Python client's overhead per snapshot upload and per NiNo step, in one run,
# against one nino_nowcaster on loopback (docs/BENCHMARKS.md, "Client overhead").
#   bash tools/bench_clients.sh [--cases fm16,mlp10m] [--server_threads N]
# Serves the official checkpoints from ../shared when present, else the synthetic ones (the
# overhead does not depend on the weights; server_nowcast_ms is the same computation).
set -euo pipefail
cd "$(dirname "$0")/.."
CASES=fm16,mlp10m
SERVER_THREADS=1
while [ $# -gt 0 ]; do
  case "$1" in
    --cases) CASES="$2"; shift 2 ;;
    --server_threads) SERVER_THREADS="$2"; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
bazel build //nowcaster:nino_nowcaster //tools:bench_client //tools:synthetic_nino_ckpt //tools:synthetic_nino_mlp_ckpt
SHARED="${NINO_SHARED_DIR:-../shared}/reference/checkpoints"
if [ -f "$SHARED/nino_no_posw.pt" ] && [ -f "$SHARED/nino_mlp.pt" ]; then
  GNN="$SHARED/nino_no_posw.pt"; WNN="$SHARED/nino_mlp.pt"; WEIGHTS=official
else
  GNN=bazel-bin/tools/synthetic_nino.pt; WNN=bazel-bin/tools/synthetic_nino_mlp.pt; WEIGHTS=synthetic
fi
LOG=$(mktemp)
./bazel-bin/nowcaster/nino_nowcaster --address=127.0.0.1:0 --metrics_port=0 --threads="$SERVER_THREADS" \
  --nino_model="nino_no_posw=$GNN,nino_mlp=$WNN" >"$LOG" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null; wait $SERVER 2>/dev/null; rm -f "$LOG"' EXIT
for _ in $(seq 600); do
  PORT=$(grep -o 'listening on 127.0.0.1:[0-9]*' "$LOG" | head -1 | cut -d: -f2 || true)
  [ -n "$PORT" ] && break
  sleep 0.1
done
[ -n "$PORT" ] || { cat "$LOG"; exit 1; }
echo "# $(date -u +%FT%TZ) $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2), weights: $WEIGHTS, server threads $SERVER_THREADS"
./bazel-bin/tools/bench_client --address="127.0.0.1:$PORT" --cases="$CASES"
/usr/bin/python3 python/bench/bench_client.py --address "127.0.0.1:$PORT" --cases "$CASES"
