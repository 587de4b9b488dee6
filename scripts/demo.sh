#!/usr/bin/env bash
# The demo on the embedded default: runs set-up and the build, then the main job as far as the
# project has grown (see README "Status"). Re-running is fast: set-up and build are cached.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh >/dev/null
DUS=build/trainer/dus
OUT="${DUS_DEMO_DIR:-demo-out}"
mkdir -p "$OUT"
echo "== demo: forward + backward speed of the demo model (recipes/demo/model.json) on this CPU"
"$DUS" bench forward --config recipes/demo/model.json --batch 8 --seq 256 --steps 5 --warmup 1
