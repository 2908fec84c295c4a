#!/usr/bin/env bash
# Runs python/tests/$1.py with Debian's /usr/bin/python3 (python3-torch) from the Bazel
# runfiles: the package sources and the generated stubs side by side under python/.
set -euo pipefail
ROOT="${TEST_SRCDIR:?run under bazel test}/${TEST_WORKSPACE:?}"
export PYTHONPATH="$ROOT/python:$ROOT/python/tests"
export NINO_TEST_ROOT="$ROOT"
export PYTHONDONTWRITEBYTECODE=1
cd "$ROOT"
exec /usr/bin/python3 "$ROOT/python/tests/unittest_junit.py" "$1"
