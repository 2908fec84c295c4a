#!/usr/bin/env bash
# Per-operator CPU profile of our NiNo step (nino_bench), sampled with perf (cpu-clock, DWARF call
# graphs through LibTorch's .eh_frame): every sample inside NowcastEngine::Nowcast is charged to
# the outermost LibTorch operator (at::_ops::<op>::call) that our code called, so the rows
# partition the step's CPU time; inside it, the share spent in OpenBLAS's sgemm and in page
# faults is shown. CPU-time sampling is not skewed by other processes on the machine (the
# LibTorch legacy profiler is: it also retains memory per step, and the extra page faults
# doubled the step's CPU time here).
#
#   tools/profile_step.sh [--model fm16] [--threads 1] [--repeat 150] [--freq 1000]
#
# Needs perf (linux-perf) allowed to sample (perf_event_paranoid <= 2 for one's own process).
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=fm16; THREADS=1; REPEAT=150; FREQ=1000
while [ $# -gt 0 ]; do
  case "$1" in
    --model) MODEL=$2; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    --repeat) REPEAT=$2; shift 2 ;;
    --freq) FREQ=$2; shift 2 ;;
    *) echo "unknown argument '$1'" >&2; exit 2 ;;
  esac
done
SHARED=${NINO_SHARED_DIR:-$(pwd)/../shared}
BENCH=${NINO_BENCH:-./bazel-bin/tools/nino_bench}
[ -x "$BENCH" ] || bazel build //tools:nino_bench
DATA=$(mktemp --suffix=.perf)
trap 'rm -f "$DATA"' EXIT
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
CMD="$BENCH --model $MODEL --threads $THREADS --repeat $REPEAT --nino_ckpt $SHARED/reference/checkpoints/nino_no_posw.pt"
echo "command: perf record -e cpu-clock -F $FREQ --call-graph dwarf,16384 -- $CMD"
perf record -q -e cpu-clock -F "$FREQ" --call-graph dwarf,16384 -o "$DATA" -- $CMD 2>/dev/null | tail -1
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
perf script -i "$DATA" -F comm,tid,ip,sym,dso 2>/dev/null | /usr/bin/python3 -c '
import collections, re, sys
OP = re.compile(r"at::_ops::([A-Za-z0-9_]+)::(call|redispatch)\b")
samples = []  # one list of symbols per sample, leaf first
cur = []
for line in sys.stdin:
    line = line.rstrip("\n")
    if not line.strip():
        if cur: samples.append(cur)
        cur = []
        continue
    if not line.startswith(("\t", " ")) or re.match(r"^\S", line):
        if cur: samples.append(cur)
        cur = []
        continue
    parts = line.strip().split(" ", 1)
    cur.append(parts[1] if len(parts) > 1 else "")
if cur: samples.append(cur)

total = len(samples)
step = [s for s in samples if any("nino::NowcastEngine::Nowcast" in f for f in s)]
by_op = collections.Counter(); gemm = collections.Counter(); fault = collections.Counter()
by_fn = collections.Counter()
for s in step:
    # outermost LibTorch operator below our code: scan from the root down
    op = None
    for f in reversed(s):
        m = OP.search(f)
        if m:
            op = m.group(1); break
    if op is None:
        fn = next((f for f in s if "nino::" in f), "?")
        op = "(our code: " + re.sub(r"\(.*", "", fn.split(" ")[0]) + ")"
    by_op[op] += 1
    if any("sgemm" in f for f in s): gemm[op] += 1
    if any("exc_page_fault" in f for f in s): fault[op] += 1
    fn = next((re.sub(r" \(/.*", "", re.sub(r"\+0x[0-9a-f]+", "", f)) for f in s if re.search(r"nino::(NiNoModel::Forward(Gnn|Mlp)|ScaleStates|UnscaleFlat|NowcastEngine::Nowcast)", f)), "?")
    by_fn[fn] += 1
n = len(step)
print(f"samples: {total} in the process, {n} inside NowcastEngine::Nowcast (the timed steps)")
g = sum(gemm.values()); pf = sum(fault.values())
print(f"inside the step: OpenBLAS sgemm {100*g/n:.1f}%, page faults {100*pf/n:.1f}%, everything else {100*(n-g-pf)/n:.1f}%")
print()
print("| operator (as called by our code) | % of step CPU | of which sgemm | of which page faults |")
print("|---|---|---|---|")
for op, c in by_op.most_common(18):
    print(f"| {op} | {100*c/n:.1f} | {100*gemm[op]/n:.1f} | {100*fault[op]/n:.1f} |")
print()
print("| innermost NiNo function | % of step CPU |")
print("|---|---|")
for fn, c in by_fn.most_common(6):
    print(f"| {fn} | {100*c/n:.1f} |")
'
