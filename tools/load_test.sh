#!/usr/bin/env bash
# The full nowcaster load test of issue 13, outside CI (CI runs //tools:load_test_test, the
# short version): 16 FM-16 jobs and 2 MLP 784-512-512-512-10 jobs streaming snapshots and asking
# for NiNo steps against one nino_nowcaster (the real binary, a child process) for DURATION_S
# seconds; every prediction is checked bit for bit against the in-process NiNo step.
# docs/BENCHMARKS.md section 8 shows a run.
#
#   bash tools/load_test.sh                      # 180 s, daemon 1 thread x 2 workers
#   DURATION_S=60 bash tools/load_test.sh --workers=1 --server_threads=2
#
# Extra arguments go to nino_load_test (see --help). Writes the report and its JSON to
# $OUT_DIR (default /tmp/nino_load_test_<time>); exit status 0 only when nothing was lost or
# crossed.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION_S="${DURATION_S:-180}"
OUT_DIR="${OUT_DIR:-/tmp/nino_load_test_$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$OUT_DIR"

bazel build //tools:nino_load_test //nowcaster:nino_nowcaster

{
  echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'),"\
       "$(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)"
  echo "commit: $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . || echo ' (+ local changes)')"
  echo "uptime before: $(uptime)"
} | tee "$OUT_DIR/machine.txt"

set +e
./bazel-bin/tools/nino_load_test \
  --jobs=fm16:16,mlp512:2 \
  --duration_s="$DURATION_S" \
  --server_threads=1 --workers=2 --verify_threads=1 \
  --memory_budget_bytes=$((4 << 30)) \
  --work_dir="$OUT_DIR" \
  --json_out="$OUT_DIR/report.json" \
  "$@" | tee "$OUT_DIR/report.txt"
status=${PIPESTATUS[0]}
set -e
echo "uptime after: $(uptime)" | tee -a "$OUT_DIR/machine.txt"
echo "report: $OUT_DIR/report.txt, $OUT_DIR/report.json; daemon log: $OUT_DIR/nowcaster.log"
exit "$status"
