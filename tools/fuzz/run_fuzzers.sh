#!/usr/bin/env bash
# Builds the libFuzzer targets with Debian's clang-14 (-fsanitize=fuzzer,address,undefined) and
# runs each one for a fixed time, one after the other, at low priority. Not part of CI: the
# corpora and regression inputs are replayed by the Bazel tests //tools/fuzz:*_replay_test.
#
#   tools/fuzz/run_fuzzers.sh [seconds_per_target] [target ...]
#       targets: torch_file chunk_codec register_job (default: all three)
#   env: FUZZ_BUILD_DIR  objects, binaries and the growing corpora (default /tmp/nino-fuzz)
#        FUZZ_JOBS       parallel compiles (default 2)
#        FUZZ_ARGS       extra libFuzzer flags
#        FUZZ_BUILD_ONLY=1  build, do not run
#
# The build does not use Bazel: it compiles the project sources each target needs straight
# from the tree with clang++-14 (instrumented), generates nowcaster.pb.{h,cc} with protoc, and
# links the uninstrumented Debian LibTorch, protobuf, gRPC and abseil shared libraries (the same
# libstdc++ and CXX11 ABI as the Bazel build). Objects are rebuilt when their source or any
# project header is newer.
#
# Each run writes the inputs that found new coverage to $FUZZ_BUILD_DIR/corpus/<target> (the
# committed seeds in tools/fuzz/corpus/<target> are read, never written) and a crashing input to
# $FUZZ_BUILD_DIR/artifacts/<target>/; copy a minimised one to tools/fuzz/regressions/<target>/
# with a regression test. Logs: $FUZZ_BUILD_DIR/logs/<target>.log (execs, coverage, findings).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
SECONDS_PER_TARGET=${1:-600}
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -eq 0 ] && TARGETS=(torch_file chunk_codec register_job)
B=${FUZZ_BUILD_DIR:-/tmp/nino-fuzz}
JOBS=${FUZZ_JOBS:-2}
CXX=clang++-14
command -v "$CXX" >/dev/null || { echo "run_fuzzers: $CXX missing (apt-get install clang-14 libfuzzer-14-dev)"; exit 1; }
mkdir -p "$B/obj" "$B/gen" "$B/bin" "$B/logs"

# --- protobuf code ---
PROTO=proto/nino/v1/nowcaster.proto
if [ ! -f "$B/gen/nino/v1/nowcaster.pb.cc" ] || [ "$PROTO" -nt "$B/gen/nino/v1/nowcaster.pb.cc" ]; then
  protoc --proto_path=proto --cpp_out="$B/gen" "$PROTO"
fi

SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-sanitize=vptr"
CXXFLAGS="-std=c++17 -O1 -g -fno-omit-frame-pointer -D_GLIBCXX_USE_CXX11_ABI=1 \
  -DFUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION -I$ROOT -I$B/gen -I/usr/include/torch/csrc/api/include \
  -I/usr/include/eigen3 -Wno-unused-command-line-argument $SAN"
LIBS="$(pkg-config --libs grpc++ protobuf absl_status absl_statusor absl_strings absl_str_format \
  absl_synchronization absl_time) -L/usr/lib/x86_64-linux-gnu -Wl,--no-as-needed -ltorch -ltorch_cpu \
  -lc10 -Wl,--as-needed -lz -lpthread"

# Project sources, compiled with -fsanitize=fuzzer-no-link (coverage) as one archive.
LIB_SRCS=(
  common/io/crc32c.cc common/io/pickle_value.cc common/io/pickle_reader.cc common/io/torch_file.cc
  common/nino/laplacian_pe.cc common/nino/neural_graph.cc common/nino/nino_model.cc
  common/nino/nowcast_engine.cc common/nino/scaling.cc common/nino/schedule.cc
  common/nino/graph_size.cc common/nino/memory_estimate.cc
  nowcaster/job_spec.cc nowcaster/job_footprint.cc
  proto/wire.cc proto/chunk_codec.cc
)
# The Env seam the checkpoint writer goes through (where the tree has it).
for s in common/env/posix_env.cc common/env/write_file_atomically.cc; do
  [ -f "$s" ] && LIB_SRCS+=("$s")
done

# Rebuilds an object when it is missing or older than its source or any header it included
# (the .d file clang writes beside it).
compile() {  # src obj extra-flags
  local src=$1 obj=$2 dep
  if [ -f "$obj" ] && [ -f "$obj.d" ]; then
    local stale=0
    for dep in $(sed -e 's/^[^:]*://' -e 's/\\$//' "$obj.d"); do
      if [ ! -e "$dep" ] || [ "$dep" -nt "$obj" ]; then stale=1; break; fi
    done
    [ $stale = 0 ] && return 0
  fi
  mkdir -p "$(dirname "$obj")"
  echo "  CXX $src"
  nice -n 10 $CXX $CXXFLAGS $3 -MMD -MF "$obj.d" -c "$src" -o "$obj"
}
export -f compile
export CXX CXXFLAGS

echo "run_fuzzers: compiling into $B"
{
  for s in "${LIB_SRCS[@]}"; do echo "$s $B/obj/${s%.cc}.o"; done
  echo "$B/gen/nino/v1/nowcaster.pb.cc $B/obj/gen/nowcaster.pb.o"
} | xargs -P "$JOBS" -L 1 bash -c 'compile "$0" "$1" -fsanitize=fuzzer-no-link'
OBJS=()
for s in "${LIB_SRCS[@]}"; do OBJS+=("$B/obj/${s%.cc}.o"); done
OBJS+=("$B/obj/gen/nowcaster.pb.o")
rm -f "$B/libnino_fuzz.a"
ar rcs "$B/libnino_fuzz.a" "${OBJS[@]}"

for t in "${TARGETS[@]}"; do
  compile "tools/fuzz/${t}_fuzzer.cc" "$B/obj/tools/fuzz/${t}_fuzzer.o" -fsanitize=fuzzer-no-link
  if [ ! -f "$B/bin/${t}_fuzzer" ] || [ "$B/obj/tools/fuzz/${t}_fuzzer.o" -nt "$B/bin/${t}_fuzzer" ] \
     || [ "$B/libnino_fuzz.a" -nt "$B/bin/${t}_fuzzer" ]; then
    echo "  LINK ${t}_fuzzer"
    nice -n 10 $CXX -fsanitize=fuzzer $SAN "$B/obj/tools/fuzz/${t}_fuzzer.o" "$B/libnino_fuzz.a" \
      $LIBS -o "$B/bin/${t}_fuzzer"
  fi
done
[ "${FUZZ_BUILD_ONLY:-0}" = 1 ] && { echo "run_fuzzers: built ${TARGETS[*]} in $B/bin"; exit 0; }

for t in "${TARGETS[@]}"; do
  mkdir -p "$B/corpus/$t" "$B/artifacts/$t"
  seeds=("tools/fuzz/corpus/$t")
  [ -d "tools/fuzz/regressions/$t" ] && seeds+=("tools/fuzz/regressions/$t")
  dict=()
  [ -f "tools/fuzz/$t.dict" ] && dict=(-dict="tools/fuzz/$t.dict")
  echo "run_fuzzers: $t for ${SECONDS_PER_TARGET}s (log $B/logs/$t.log)"
  # -rss_limit_mb/-malloc_limit_mb: one allocation or a resident size above 2 GiB is a finding
  # (a length field that was trusted). -timeout: 10 s for one input is a finding.
  set +e
  ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=0 UBSAN_OPTIONS=print_stacktrace=1 \
    nice -n 10 "$B/bin/${t}_fuzzer" "$B/corpus/$t" "${seeds[@]}" "${dict[@]}" \
    -max_total_time="$SECONDS_PER_TARGET" -rss_limit_mb=2048 -malloc_limit_mb=2048 -timeout=10 \
    -max_len=65536 -print_final_stats=1 -artifact_prefix="$B/artifacts/$t/" ${FUZZ_ARGS:-} \
    >"$B/logs/$t.log" 2>&1
  rc=$?
  set -e
  grep -E "^#[0-9]+.*DONE|stat::number_of_executed_units|stat::peak_rss_mb|cov:" "$B/logs/$t.log" | tail -3
  if [ $rc -ne 0 ]; then
    echo "run_fuzzers: $t FOUND SOMETHING (exit $rc): see $B/logs/$t.log and $B/artifacts/$t/"
    grep -E "ERROR|SUMMARY|check failed|==ERROR" "$B/logs/$t.log" | head -5
  fi
done
