#!/usr/bin/env bash
# The project's test command: installs missing Debian packages, then runs every test target.
# Only tests that compare with the official code (golden data, official checkpoints) need
# ../shared and skip with a message without it; the rest use synthetic fixtures (tests/testing).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
# Remove test logs of earlier runs so that only this run's results are counted.
rm -rf "$(bazel info bazel-testlogs 2>/dev/null || echo bazel-testlogs)"/* 2>/dev/null || true
exec bazel test //... --nocache_test_results "$@"
