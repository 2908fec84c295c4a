#!/usr/bin/env bash
# Installs every Debian package this project needs, and nothing that is already there.
# Idempotent: a second run only checks (dpkg-query) and exits. Needs root (or sudo) on Debian 12.
set -euo pipefail

PACKAGES=(
  # build
  bazel-bootstrap cmake ninja-build g++ pkg-config
  # fuzzing (tools/fuzz/run_fuzzers.sh, outside CI)
  clang-14 libfuzzer-14-dev
  # LibTorch (with c10d Gloo headers) and the Python side used by interop tests
  libtorch-dev libgloo-dev python3-torch python3-numpy
  # torchvision's models: the Python tracer is tested on the networks users take from it
  python3-torchvision
  # gRPC / protobuf / abseil / tests
  libgrpc++-dev protobuf-compiler-grpc protobuf-compiler libprotobuf-dev libabsl-dev
  libgtest-dev libgmock-dev
  # numerics and utilities
  # LibTorch uses the system libblas.so.3: OpenBLAS (OpenMP build, follows at::set_num_threads)
  # instead of the ~20x slower reference BLAS
  libopenblas0-openmp
  libeigen3-dev libspectra-dev nlohmann-json3-dev libssl-dev libcurl4-openssl-dev
  # the openssl tool: TLS tests and benchmarks make their certificates with it
  openssl
  # nowcaster metrics (Prometheus pull endpoint)
  prometheus-cpp-dev
  # data and plotting
  dataset-fashion-mnist bible-kjv gnuplot-nox
  # the python package `nino` (python/install.sh; grpc_python_plugin is in protobuf-compiler-grpc)
  python3-grpcio python3-protobuf python3-crcmod python3-pip python3-setuptools python3-wheel
)
# Installs python/ as the package `nino` for /usr/bin/python3 (skips when already up to date).
install_python_package() { bash "$(dirname "${BASH_SOURCE[0]}")/../python/install.sh"; }

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#PACKAGES[@]} packages present"
  install_python_package
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "setup: installing ${#missing[@]} missing packages: ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
install_python_package
echo "setup: done"
