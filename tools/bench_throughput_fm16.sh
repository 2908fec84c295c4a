#!/usr/bin/env bash
# Training throughput of FM-16 (batch 128, Adam): our C++ trainer vs Debian's python3-torch, on
# the same machine in one run, at 1 and 2 threads. Steps/s exclude evaluation and start-up.
#   tools/bench_throughput_fm16.sh [STEPS]
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${1:-300}
[ -x ./bazel-bin/trainer/nino_train ] || bazel build //trainer:nino_train
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); load $(cut -d' ' -f1-3 /proc/loadavg); $(date -u)"
for t in 1 2; do
  for rep in 1; do
    /usr/bin/python3 tools/bench_python_fm16.py --steps "$STEPS" --threads "$t"
    # The same python loop with the heap settings our binaries apply (common/runtime/allocator.h).
    GLIBC_TUNABLES=glibc.malloc.trim_threshold=1073741824:glibc.malloc.mmap_threshold=33554432 \
      /usr/bin/python3 tools/bench_python_fm16.py --steps "$STEPS" --threads "$t" | sed 's/"impl": "/"impl": "tuned heap, /'
    out=$(mktemp -d)
    ./bazel-bin/trainer/nino_train --task fm16 --steps $((STEPS + 20)) --eval_every 0 --eval_limit 1000 \
      --log_every 0 --threads "$t" --checkpoint_every 0 --out_dir "$out" --quiet >/dev/null
    python3 -c "import json,sys; s=json.load(open('$out/summary.json')); print(json.dumps({'impl':'nino_train (C++)','threads':$t,'steps':s['steps_done'],'steps_per_second':s['steps_per_second'],'cpu_steps_per_second':s['cpu_steps_per_second']}))"
    rm -rf "$out"
  done
done
