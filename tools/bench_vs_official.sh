#!/usr/bin/env bash
# One NiNo step, ours (nino_bench) against the OFFICIAL code (SamsungSAILMontreal/nino @ 84fb0cf,
# run through ../shared/reference/cpu_shim by ../shared/reference/official_bench/time_official_step.py),
# in ONE run on the same machine: FM-16 and the MLP 784-512-512-512-10, at 1 and 2 threads,
# interleaved (ours, official, ours, official, ...) with several repeats, each measurement in its
# own process. Before every measurement it waits (bounded) for the machine to be quiet and records
# the load beside the row. Prints the exact commands, the machine, one line per measurement and
# one table (median step seconds, peak RSS GiB, ratios).
#
#   tools/bench_vs_official.sh [--repeats N] [--threads "1 2"] [--models "fm16 mlp512"]
#                              [--fm16_steps N] [--mlp_steps N] [--load_max 0.7] [--load_wait_s 240]
#                              [--official_heap default|both] [--no_build] [--out FILE.tsv]
#
# --official_heap both also runs the official step with the glibc heap settings our binaries
# apply at start (common/runtime/allocator.h), as a third row: the official code as users run
# it is "default". Needs Debian's python3-torch, python3-torchvision, python3-scipy and
# python3-psutil for /usr/bin/python3; missing ones are apt-get installed (root or sudo) or the
# script says how. The shared folder is ../shared (or $NINO_SHARED_DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

REPEATS=3
THREADS="1 2"
MODELS="fm16 mlp512"
FM16_STEPS=20
MLP_STEPS=2
LOAD_MAX=0.7
LOAD_WAIT_S=240
OFFICIAL_HEAP=default
BUILD=1
OUT=""
while [ $# -gt 0 ]; do
  case "$1" in
    --repeats) REPEATS=$2; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    --models) MODELS=$2; shift 2 ;;
    --fm16_steps) FM16_STEPS=$2; shift 2 ;;
    --mlp_steps) MLP_STEPS=$2; shift 2 ;;
    --load_max) LOAD_MAX=$2; shift 2 ;;
    --load_wait_s) LOAD_WAIT_S=$2; shift 2 ;;
    --official_heap) OFFICIAL_HEAP=$2; shift 2 ;;
    --no_build) BUILD=0; shift ;;
    --out) OUT=$2; shift 2 ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done

SHARED=${NINO_SHARED_DIR:-$ROOT/../shared}
REF=$SHARED/reference
OFFICIAL=$REF/official_bench/time_official_step.py
CKPT=$REF/checkpoints/nino_no_posw.pt
PY=/usr/bin/python3
[ -f "$OFFICIAL" ] || { echo "error: $OFFICIAL not found (set NINO_SHARED_DIR)" >&2; exit 2; }
[ -f "$CKPT" ] || { echo "error: $CKPT not found" >&2; exit 2; }

# --- the official code's Python dependencies (Debian packages for /usr/bin/python3) ---
if ! $PY -c 'import torch, torchvision, scipy, psutil' 2>/dev/null; then
  missing=()
  for p in python3-torch python3-torchvision python3-scipy python3-psutil; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
  done
  echo "the official code needs: ${missing[*]}" >&2
  if [ "$(id -u)" = 0 ]; then SUDO=""; elif sudo -n true 2>/dev/null; then SUDO="sudo -n"; else SUDO=none; fi
  if [ "$SUDO" = none ]; then
    echo "error: install them first: sudo apt-get install -y ${missing[*]}" >&2
    exit 2
  fi
  $SUDO apt-get install -y "${missing[@]}" || { $SUDO apt-get update && $SUDO apt-get install -y "${missing[@]}"; }
fi

BENCH=${NINO_BENCH:-$ROOT/bazel-bin/tools/nino_bench}
if [ "$BUILD" = 1 ] && [ -z "${NINO_BENCH:-}" ]; then
  bazel build //tools:nino_bench >&2
fi
[ -x "$BENCH" ] || { echo "error: $BENCH not built (bazel build //tools:nino_bench)" >&2; exit 2; }

LOG=$(mktemp)
[ -n "$OUT" ] || OUT=$(mktemp --suffix=.tsv)
trap 'rm -f "$LOG"' EXIT
TUNED_HEAP="GLIBC_TUNABLES=glibc.malloc.trim_threshold=1073741824:glibc.malloc.mmap_threshold=33554432"

# Busy cores over the last 2 s (from /proc/stat; nothing of ours runs meanwhile).
busy_cores() {
  local a b
  a=($(head -1 /proc/stat)); sleep 2; b=($(head -1 /proc/stat))
  awk -v u1="${a[1]}" -v n1="${a[2]}" -v s1="${a[3]}" -v i1="${a[4]}" -v w1="${a[5]}" -v q1="${a[6]}" -v sq1="${a[7]}" -v st1="${a[8]:-0}" \
      -v u2="${b[1]}" -v n2="${b[2]}" -v s2="${b[3]}" -v i2="${b[4]}" -v w2="${b[5]}" -v q2="${b[6]}" -v sq2="${b[7]}" -v st2="${b[8]:-0}" \
      -v ncpu="$(nproc)" 'BEGIN {
        busy = (u2+n2+s2+q2+sq2+st2) - (u1+n1+s1+q1+sq1+st1); idle = (i2+w2) - (i1+w1);
        printf "%.2f", (busy + idle > 0) ? ncpu * busy / (busy + idle) : 0 }'
}

# Waits until the 1-minute load is below LOAD_MAX, at most LOAD_WAIT_S seconds; prints
# "load1 busy_cores waited_s".
wait_quiet() {
  local t0=$SECONDS l1 b
  while :; do
    l1=$(cut -d' ' -f1 /proc/loadavg)
    b=$(busy_cores)
    if awk -v l="$l1" -v m="$LOAD_MAX" 'BEGIN { exit !(l < m) }'; then break; fi
    if (( SECONDS - t0 >= LOAD_WAIT_S )); then
      echo "warning: 1-minute load $l1 still >= $LOAD_MAX after ${LOAD_WAIT_S}s (busy ${b} cores); measuring anyway" >&2
      break
    fi
    sleep 3
  done
  echo "$l1 $b $((SECONDS - t0))"
}

json_field() {  # json_field KEY < one JSON line
  $PY -c 'import json,sys; print(json.loads(sys.stdin.read())[sys.argv[1]])' "$1"
}

ours_cmd() {  # model threads
  local steps=$FM16_STEPS
  [ "$1" = mlp512 ] && steps=$MLP_STEPS
  echo "$BENCH --model $1 --threads $2 --repeat $steps --nino_ckpt $CKPT"
}
official_cmd() {  # model threads
  local m=FM-16 steps=$FM16_STEPS
  [ "$1" = mlp512 ] && { m=MLP-784-512x3; steps=$MLP_STEPS; }
  echo "$PY $OFFICIAL --model $m --threads $2 --reps $steps --warmup 1 --ckpt nino_no_posw"
}

echo "== machine"
echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
echo "host: $(nproc) cores (nproc), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
echo "cpu flags: $(grep -m1 flags /proc/cpuinfo | tr ' ' '\n' | grep -E '^(avx2|avx512f|avx512_bf16|amx_bf16|amx_tile)$' | xargs)"
echo "python: $($PY -c 'import torch; print("torch", torch.__version__, torch.__file__)')"
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== commands (each measurement is one process; the step time is that process's median)"
for m in $MODELS; do for t in $THREADS; do
  echo "ours:     $(ours_cmd "$m" "$t")"
  echo "official: $(official_cmd "$m" "$t")"
  [ "$OFFICIAL_HEAP" = both ] && echo "official, tuned heap: $TUNED_HEAP $(official_cmd "$m" "$t")"
done; done
echo "== measurements (impl model threads repeat step_s peak_rss_gib edges load1 busy_cores_before waited_s)"

printf 'impl\tmodel\tthreads\trepeat\tstep_s\tpeak_rss_gib\tedges\tload1\tbusy\twaited_s\n' > "$OUT"
record() {  # impl model threads repeat step rss edges quiet...
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >> "$OUT"
  printf '%-22s %-7s %s %s %8ss %6s GiB  E=%s  load1=%s busy=%s waited=%ss\n' "$@"
}

for m in $MODELS; do
  for t in $THREADS; do
    for r in $(seq 1 "$REPEATS"); do
      q=($(wait_quiet))
      line=$($(ours_cmd "$m" "$t") 2>>"$LOG" | tail -1) || { echo "error: nino_bench failed:"; tail -20 "$LOG"; exit 1; }
      record ours "$m" "$t" "$r" "$(json_field step_s <<<"$line")" "$(json_field peak_rss_gib <<<"$line")" \
        "$(json_field edges <<<"$line")" "${q[@]}"
      variants=(default)
      [ "$OFFICIAL_HEAP" = both ] && variants+=(tuned)
      for v in "${variants[@]}"; do
        q=($(wait_quiet))
        if [ "$v" = tuned ]; then
          line=$(env "$TUNED_HEAP" $(official_cmd "$m" "$t") 2>>"$LOG" | grep '^RESULT ' | sed 's/^RESULT //') || true
          impl=official-tuned-heap
        else
          line=$($(official_cmd "$m" "$t") 2>>"$LOG" | grep '^RESULT ' | sed 's/^RESULT //') || true
          impl=official
        fi
        [ -n "$line" ] || { echo "error: the official step failed:"; tail -20 "$LOG"; exit 1; }
        rss=$($PY -c 'import json,sys; print(round(json.loads(sys.stdin.read())["peak_rss_mib"]/1024, 3))' <<<"$line")
        record "$impl" "$m" "$t" "$r" "$(json_field step_s_median <<<"$line")" "$rss" "$(json_field edges <<<"$line")" "${q[@]}"
      done
    done
  done
done
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "measurements: $OUT"

echo "== table (medians over the repeats of each process's median step; ratio = official / ours)"
$PY - "$OUT" <<'EOF'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter='\t'))
names = {'fm16': 'FM-16 CNN', 'mlp512': 'MLP 784-512-512-512-10'}
keys = []
for r in rows:
    k = (r['model'], r['threads'])
    if k not in keys: keys.append(k)
impls = [i for i in ('official', 'official-tuned-heap') if any(r['impl'] == i for r in rows)]
hdr = '| model | edges | threads | ours: step | ours: peak RSS |'
for i in impls:
    hdr += f' {i}: step | {i}: peak RSS | {i} / ours (time) | (memory) |'
print(hdr + ' 1-min load before each run (ours / official) |')
print('|' + '---|' * (hdr.count('|') ))
for m, t in keys:
    sel = lambda i: [r for r in rows if r['model'] == m and r['threads'] == t and r['impl'] == i]
    ours = sel('ours')
    so = statistics.median(float(r['step_s']) for r in ours)
    mo = statistics.median(float(r['peak_rss_gib']) for r in ours)
    edges = {r['edges'] for r in rows if r['model'] == m}
    line = f"| {names.get(m, m)} | {'/'.join(sorted(edges))} | {t} | {so:.4g} s | {mo:.2f} GiB |"
    for i in impls:
        off = sel(i)
        s = statistics.median(float(r['step_s']) for r in off)
        mm = statistics.median(float(r['peak_rss_gib']) for r in off)
        line += f' {s:.4g} s | {mm:.2f} GiB | **{s / so:.2f}x** | {mm / mo:.1f}x |'
    loads = ' '.join(f"{a['load1']}/{b['load1']}" for a, b in zip(ours, sel('official')))
    print(line + f' {loads} |')
print()
print('per-process medians (s): ' + '; '.join(
    f"{m}/{t}t {i}: " + ', '.join(r['step_s'] for r in rows if r['model'] == m and r['threads'] == t and r['impl'] == i)
    for m, t in keys for i in ['ours'] + impls))
EOF
