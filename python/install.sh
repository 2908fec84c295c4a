#!/usr/bin/env bash
# Installs the `nino` Python package for Debian's /usr/bin/python3 (tools/setup.sh runs this):
# pip builds it from a temporary copy of python/ (the gRPC stubs are generated from
# proto/nino/v1/nowcaster.proto during the build, see setup.py) into /usr/local/lib/python3*/
# dist-packages. Offline: --no-index --no-deps --no-build-isolation (torch, grpcio, protobuf,
# setuptools come from Debian packages). Idempotent: skips when the installed copy was built from
# the same sources.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY=/usr/bin/python3
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

hash="$(cd "$ROOT" && cat proto/nino/v1/nowcaster.proto python/pyproject.toml python/setup.py \
  python/nino/*.py python/nino/describe/*.py python/nino/v1/__init__.py | sha256sum | cut -c1-16)"
installed="$(cd / && "$PY" -c 'import nino._build_info as b; print(b.SOURCE_HASH)' 2>/dev/null || true)"
if [ "$installed" = "$hash" ]; then
  echo "setup: python package nino is installed (sources $hash)"
  exit 0
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
cp -r "$ROOT/python/pyproject.toml" "$ROOT/python/setup.py" "$ROOT/python/README.md" \
  "$ROOT/python/nino" "$tmp/"
find "$tmp" -name '__pycache__' -prune -exec rm -rf {} +
rm -f "$tmp"/nino/v1/nowcaster_pb2*.py  # always generated afresh from the .proto
echo "SOURCE_HASH = \"$hash\"" > "$tmp/nino/_build_info.py"
echo "setup: installing the python package nino (sources $hash) for $PY"
$SUDO env NINO_PROTO_DIR="$ROOT/proto" PIP_ROOT_USER_ACTION=ignore \
  "$PY" -m pip install --quiet --no-index --no-deps --no-build-isolation \
  --break-system-packages "$tmp"
(cd / && "$PY" -c 'import nino, nino.v1.nowcaster_pb2_grpc; print("setup: import nino OK:", nino.__file__)')
