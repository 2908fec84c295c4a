#!/usr/bin/env bash
# Runs a deploy/tests/*.py check with Debian's /usr/bin/python3 (python3-yaml comes with
# python3-torch from tools/setup.sh), not whatever python3 comes first on PATH.
set -euo pipefail
PY=/usr/bin/python3
[[ -x $PY ]] || PY=$(command -v python3)
if ! "$PY" -c 'import yaml' 2>/dev/null; then
  echo "FAILED: $PY lacks the yaml module: apt-get install python3-yaml (tools/setup.sh brings it with python3-torch)" >&2
  exit 1
fi
exec "$PY" "$@"
