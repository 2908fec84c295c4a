#!/usr/bin/env bash
# The main job on one machine. Today: one NiNo step on the FM-16 network (nino_step_demo);
# the nowcaster + trainer workers launcher replaces it once those exist.
#   bash deploy/local_demo.sh [--nino_ckpt PATH] [other nino_step_demo flags]
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
bazel build //tools:nino_step_demo
exec ./bazel-bin/tools/nino_step_demo --repeat 5 "$@"
