#!/usr/bin/env bash
# Configures and builds (Release, ccache) into build/ using the set-up venv's torch.
# Usage: scripts/build.sh [extra cmake args]. Incremental: rebuilds only what changed.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${XDG_CACHE_HOME:-$HOME/.cache}/dus-trainer/venv"
BUILD_DIR="${DUS_BUILD_DIR:-build}"
TORCH_PREFIX="$("$VENV/bin/python" -c 'import torch.utils; print(torch.utils.cmake_prefix_path)')"
if [ ! -f "$BUILD_DIR/CMakeCache.txt" ] || [ "$#" -gt 0 ]; then
  cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$TORCH_PREFIX" \
    -DPython3_EXECUTABLE="$VENV/bin/python" -DDUS_PYTHON="$VENV/bin/python" "$@"
fi
cmake --build "$BUILD_DIR" -j "$(nproc)"
