#!/usr/bin/env bash
# Run ON THE GPU MACHINE (BUILD_OFFLINE.md section 8: Ubuntu 24.04, CUDA, pip torch 2.11 with
# its CMake config, no gRPC/Bazel), from the repository root, with build-gpu-deps/ carried
# (tools/gpu/fetch_deps.sh) and ../shared beside the checkout (golden data, checkpoints).
#
#   bash tools/gpu/run_gpu_checks.sh [--cpu-only]     # results under $OUT (or ./gpu-results)
#
# 1. unpacks the carried .deb files into a private prefix (no root needed);
# 2. builds the NiNo core (cmake -DNINO_CORE_ONLY=ON, all cores) against the machine's LibTorch;
# 3. the parity check on the 18 golden cases on CPU and on CUDA (same 1e-5 bar; the CUDA/CPU
#    agreement follows from both meeting it, and the per-case diffs are printed);
# 4. nino_bench on CUDA for the issue's models (FM-16, GPT-2 3-64 and 4-128, llama-tiny), also
#    with the memory options, one JSON line each.
# --cpu-only skips the CUDA steps (to rehearse the script on a machine without a GPU).
set -uo pipefail
cd "$(dirname "$0")/../.."
root_dir=$(pwd)
results=${OUT:-$root_dir/gpu-results}
mkdir -p "$results"
cpu_only=0
[[ "${1:-}" == "--cpu-only" ]] && cpu_only=1
log() { echo "[$(date +%H:%M:%S)] $*" | tee -a "$results/log.txt"; }

# 1. Dependencies.
deps=$root_dir/build-gpu-deps
prefix=$deps/root
if [[ ! -d $prefix/usr ]]; then
  ls "$deps"/*.deb >/dev/null 2>&1 || { log "no .deb files in $deps (run tools/gpu/fetch_deps.sh first)"; exit 2; }
  for d in "$deps"/*.deb; do dpkg -x "$d" "$prefix"; done
fi
multiarch=x86_64-linux-gnu
export PKG_CONFIG_SYSROOT_DIR=$prefix
export PKG_CONFIG_LIBDIR=$prefix/usr/lib/$multiarch/pkgconfig:$prefix/usr/share/pkgconfig
export LD_LIBRARY_PATH=$prefix/usr/lib/$multiarch${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
pkgconf_bin=$(command -v pkg-config || echo "$prefix/usr/bin/pkgconf")

# 2. Build.
python=${PYTHON:-$(command -v python3)}
torch_prefix=$("$python" -c 'import torch; print(torch.utils.cmake_prefix_path)' 2>/dev/null || true)
log "torch cmake prefix: ${torch_prefix:-none (CMAKE_PREFIX_PATH must find Torch)}"
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
cmake -S . -B build-gpu "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DNINO_CORE_ONLY=ON \
  -DPKG_CONFIG_EXECUTABLE="$pkgconf_bin" \
  -DCMAKE_PREFIX_PATH="$torch_prefix;$prefix/usr;$prefix/usr/share/eigen3/cmake" \
  -DCMAKE_INCLUDE_PATH="$prefix/usr/include" -DCMAKE_LIBRARY_PATH="$prefix/usr/lib/$multiarch" \
  -DNINO_SHARED_DIR="$root_dir/../shared" 2>&1 | tee "$results/cmake.txt" | tail -5
cmake --build build-gpu -j "$(nproc)" --target nino_golden_check nino_bench 2>&1 | tail -20 | tee "$results/build.txt"
[[ -x build-gpu/nino_golden_check && -x build-gpu/nino_bench ]] || { log "build failed"; exit 1; }

# 3. Parity on the golden cases.
golden=$root_dir/../shared/golden
ckpts=$root_dir/../shared/reference/checkpoints
status=0
devices=(cpu)
[[ $cpu_only == 0 ]] && devices+=(cuda)
for dev in "${devices[@]}"; do
  log "golden parity on $dev"
  build-gpu/nino_golden_check --golden "$golden" --ckpt_dir "$ckpts" --device "$dev" \
    --tolerance 1e-5 | tee "$results/golden_$dev.txt" | tail -3 || status=1
done

# 4. Benchmarks (official H100 numbers to compare with are in the issue and docs/BENCHMARKS.md).
bench() {
  local dev=$1; shift
  log "nino_bench --device $dev $*"
  build-gpu/nino_bench --device "$dev" --nino_ckpt "$ckpts/nino_no_posw.pt" "$@" \
    2>>"$results/bench_err.txt" | tee -a "$results/bench_$dev.jsonl" || status=1
}
if [[ $cpu_only == 0 ]]; then
  for m in fm16 gpt2-3-64 gpt2-4-128 llama-tiny; do bench cuda --model "$m" --repeat 5; done
  bench cuda --model gpt2-4-128 --repeat 5 --bf16_edge_state
  bench cuda --model gpt2-4-128 --repeat 5 --subgraph
  bench cuda --model gpt2-4-128 --repeat 5 --edge_sample_ratio 0.05
else
  bench cpu --model fm16 --repeat 3 --floor=false
fi
log "done (status $status); results in $results"
exit $status
