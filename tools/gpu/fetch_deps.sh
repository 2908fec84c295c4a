#!/usr/bin/env bash
# Run HERE (Debian, apt reachable): downloads the .deb files of the C++ libraries a core build
# needs and the GPU machine lacks (BUILD_OFFLINE.md section 8: no abseil, Eigen, Spectra,
# nlohmann-json, curl/ssl headers), into build-gpu-deps/ (git-ignored). Carry that folder to
# the GPU machine (run tool: carry ["build-gpu-deps"]); run_gpu_checks.sh unpacks it there.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=build-gpu-deps
mkdir -p "$out"
pkgs=(libabsl-dev libabsl20220623 libeigen3-dev libspectra-dev nlohmann-json3-dev
      libcurl4-openssl-dev libcurl4 libssl-dev zlib1g-dev pkgconf pkgconf-bin libpkgconf3)
(cd "$out" && apt-get download "${pkgs[@]}")
ls -la "$out"
du -sh "$out"
