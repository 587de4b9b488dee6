#!/usr/bin/env bash
# Run ON THE GPU MACHINE, from the repository root, after scripts/gpu_bundle.sh ran here and
# .gpu-bundle/ was carried along (device tool: carry [".gpu-bundle"]). Builds the project there
# and runs the GPU tests and the kernel tests:
#   scripts/gpu_run.sh                 # configure + build + ctest -L gpu + test_kernels
#   OUT_DIR=$OUT scripts/gpu_run.sh    # writes the logs to $OUT_DIR
#   DUS_GPU_CONFIGURE_ONLY=1 ...       # stop after configuring (checks the bundle, anywhere)
# Steps: unpack the bundled .debs into a private prefix (dpkg -x; nothing goes into /), point
# pkg-config and CMake into it, configure against the machine's own torch (python3), build with
# every core, run the tests. Cost on one H100 machine (16 cores): a cold build of the tests and
# `dus` takes several minutes; the tests a few seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BUNDLE=$ROOT/.gpu-bundle
PREFIX=${DUS_GPU_PREFIX:-/tmp/dus-prefix}
BUILD_DIR=${DUS_BUILD_DIR:-build-gpu}
PYTHON=${PYTHON:-python3}
JOBS=${JOBS:-$(nproc)}
LOG_DIR=${OUT_DIR:-$BUILD_DIR}

[ -d "$BUNDLE/debs" ] || { echo "gpu_run: no $BUNDLE/debs: run scripts/gpu_bundle.sh on a development machine and carry .gpu-bundle" >&2; exit 2; }

# 1. The prefix. .pc files say prefix=/usr: rewrite them to the prefix.
mkdir -p "$PREFIX"
for deb in "$BUNDLE"/debs/*.deb; do dpkg -x "$deb" "$PREFIX"; done
# Absolute symlinks (libz.so -> /lib/x86_64-linux-gnu/libz.so.1.2.13) point into the prefix.
find "$PREFIX" -type l | while read -r link; do
  target=$(readlink "$link")
  case "$target" in /*) ln -sfn "$PREFIX$target" "$link" ;; esac
done
MULTIARCH=x86_64-linux-gnu
PC_DIRS="$PREFIX/usr/lib/$MULTIARCH/pkgconfig:$PREFIX/usr/share/pkgconfig:$PREFIX/usr/lib/pkgconfig"
for pc in $(find "$PREFIX/usr" -name '*.pc'); do
  sed -i "s|^prefix=/usr\$|prefix=$PREFIX/usr|; s|=/usr/|=$PREFIX/usr/|g" "$pc"
done
export PKG_CONFIG_PATH="$PC_DIRS${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
export LD_LIBRARY_PATH="$PREFIX/usr/lib/$MULTIARCH${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
PKG_CONFIG_ARG=()
if ! command -v pkg-config >/dev/null; then
  # The bundled pkgconf (Debian's pkg-config), with its library from the prefix.
  PKG_CONFIG_ARG=(-DPKG_CONFIG_EXECUTABLE="$PREFIX/usr/bin/pkgconf")
  export PATH="$PREFIX/usr/bin:$PATH"
fi
echo "gpu_run: prefix $PREFIX; pkg-config: $(pkg-config --modversion yaml-cpp sentencepiece 2>&1 | paste -sd' ' -)"

# 2. Configure against the machine's torch. Its nccl.h lives in the nvidia-nccl wheel.
TORCH_PREFIX=$("$PYTHON" -c 'import torch.utils; print(torch.utils.cmake_prefix_path)')
"$PYTHON" -c 'import torch; print("gpu_run: torch", torch.__version__, "cuda", torch.version.cuda, "device", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none")'
[ -d /usr/local/cuda/bin ] && export PATH="$PATH:/usr/local/cuda/bin"
if command -v nvcc >/dev/null; then nvcc --version | tail -1; else echo "gpu_run: nvcc not on PATH" >&2; fi
GENERATOR=()
[ ! -f "$BUILD_DIR/CMakeCache.txt" ] && command -v ninja >/dev/null && GENERATOR=(-G Ninja)
mkdir -p "$BUILD_DIR"
cmake -S . -B "$BUILD_DIR" "${GENERATOR[@]}" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$TORCH_PREFIX;$PREFIX/usr" \
  -DCMAKE_INCLUDE_PATH="$PREFIX/usr/include" \
  -DCMAKE_LIBRARY_PATH="$PREFIX/usr/lib/$MULTIARCH;$PREFIX/lib/$MULTIARCH" \
  -DZLIB_INCLUDE_DIR="$PREFIX/usr/include" \
  -DPython3_EXECUTABLE="$(command -v "$PYTHON")" -DDUS_PYTHON="$(command -v "$PYTHON")" \
  -DDUS_CUDA=ON "${PKG_CONFIG_ARG[@]}" 2>&1 | tee "$BUILD_DIR/configure.log" | tail -5
grep -q "DUS: CUDA kernels ON" "$BUILD_DIR/configure.log" ||
  { echo "gpu_run: CUDA kernels are OFF in this configuration" >&2; exit 3; }

[ "${DUS_GPU_CONFIGURE_ONLY:-0}" = 1 ] && { echo "gpu_run: configured (DUS_GPU_CONFIGURE_ONLY)"; exit 0; }

# 3. Build what the GPU tests need (the kernel tests and `dus`, which the test helper names).
# `dus` separately: a failure elsewhere in the tree must not hide the kernel results.
time cmake --build "$BUILD_DIR" --target test_kernels -j "$JOBS"
cmake --build "$BUILD_DIR" --target dus -j "$JOBS" || echo "gpu_run: dus did not build; kernel tests only" >&2

# 4. Run: the GPU-labelled tests, then the whole kernel binary with durations.
mkdir -p "$LOG_DIR"
status=0
ctest --test-dir "$BUILD_DIR" -L gpu --output-on-failure 2>&1 | tee "$LOG_DIR/ctest_gpu.log" || status=1
"$BUILD_DIR/tests/test_kernels" --durations yes >"$LOG_DIR/test_kernels.log" 2>&1 || status=1
grep -E "^(test cases|assertions|All tests)" "$LOG_DIR/test_kernels.log" || true
# The self-test's error table, for the closing note.
# resolve_kernels logs the per-op errors to stderr in that test case.
"$BUILD_DIR/tests/test_kernels" "kernels: auto on the GPU turns on every op that passes its self-test" 2>&1 |
  grep -E "^  (rmsnorm|rope|swiglu|cross_entropy|adamw):|^kernels:" | tee "$LOG_DIR/self_test.log" || true
echo "gpu_run: $([ $status = 0 ] && echo PASS || echo FAIL)"
exit $status
