#!/usr/bin/env bash
# Proves DUS Trainer's GPU path on a one-GPU machine in one call of at most 10 minutes, build
# included, and writes one report. Run ON THE GPU MACHINE from the repository root, after
# scripts/gpu_bundle.sh ran on a development machine and .gpu-bundle/ was carried along:
#   device tool:  run(command="scripts/gpu_run.sh", carry=[".gpu-bundle"], timeout_s=600)
#   OUT_DIR=DIR scripts/gpu_run.sh        # report + logs to DIR (default: $OUT, else build-gpu/out)
#   DUS_GPU_COMMIT=abc1234 ...            # names the commit in the report (the copy has no .git)
#   DUS_GPU_CONFIGURE_ONLY=1 ...          # stop after configuring (checks the bundle, anywhere)
#   DUS_GPU_DRY_RUN=1 ...                 # steps 3-6 on the CPU with tiny sizes and the normal
#                                         # build/ (scripts/build.sh): tests this script's logic
# Writes $OUT_DIR/gpu_report.md (re-rendered after every step, so a run cut short still has one),
# $OUT_DIR/gpu_logs.tar.gz (every log, the runs' metrics.jsonl and recipes) and prints the report
# last (the device tool returns the last 12,000 characters of stdout).
#
# Steps (each under `timeout`, clipped to what is left of the wall budget; a failure is recorded
# and the later steps still run):
#   1. unpack the bundled .debs into a private prefix (dpkg -x; nothing goes into /), configure
#      against the machine's torch (python3), build `dus` and `test_kernels` with every core
#   2. test_kernels "[gpu]" and the kernels' self-test table
#   3. a pseudo-text corpus (python), `dus tokenizer train`, `dus prepare`; a from-scratch 4-layer
#      base (`dus train`), then DUS m=1 (6 layers) in bf16 with kernels auto: straight, and again
#      with DUS_TEST_KILL_AT_STEP (SIGKILL inside that step, exit 137) + `dus resume`; the per-step
#      losses of the two runs must be bitwise equal (and the final weights)
#   4. `dus launch --nproc 1` (WORLD_SIZE 1 creates no process group: train_loop.cpp
#      setup_distributed returns early), then two ranks on the one GPU over NCCL, ddp and zero1:
#      DUS_SHARE_GPUS=1 `dus launch --nproc 2` where the trainer has that opt-in, else (or when
#      it fails) two ranks started by hand with LOCAL_RANK=0 and an NCCL_HOSTID each; losses
#      against the single process
#   5. `dus bench train` on a Mistral-7B-shaped stack (hidden 4096, intermediate 14336, 32/8
#      heads, vocab 32000), L layers, batch 1 x 4096, bf16
#   6. transformers on the same shapes (scripts/bench_hf_train.py): eager and torch.compile
# Then L = 16 for dus and transformers eager if the GPU has >= 100 GiB and time is left.
#
# Time on one H100/H200 machine (16 cores), estimated; the wall budget is 570 s of the device
# tool's 600 (DUS_GPU_BUDGET_S), and every step's limit is clipped to what is left of it:
#   configure            20 s  cmake + find_package(Torch) + the CUDA checks
#   build               200 s  87 translation units (81 C++ of the dus target, 4 .cu for sm_80 and
#                              sm_90, test_kernels.cpp, catch_main.cpp). ~60 of them include
#                              LibTorch headers: 25-30 s each on an idle core, the data/ ones
#                              1-3 s; so ~1,300 core-s / 16 cores = ~80 s, plus the
#                              critical path (nvcc ~60-90 s a .cu file, test_kernels.cpp, the two
#                              links): ~150-200 s. No ccache there: a cold build every call.
#   kernel tests         35 s  CUDA start-up + the [gpu] cases + the self-test case
#   step 3               70 s  corpus 2, tokenizer 8, prepare 4, base 15, DUS x3 40: a 6-layer
#                              hidden-512 model, ~30 ms a step; ~8 s a process for CUDA start-up,
#                              the kernels' self-test and the matmul probe
#   step 4               45 s  three launches of the 24-step DUS run
#   step 5               30 s  2.0 B parameters (8 layers): ~49 TFLOP a 4096-token step, ~0.15 s
#                              at 35% MFU; initialisation and the matmul probes dominate
#   step 6              145 s  eager 25 s (import, init on the GPU, 7 steps); torch.compile 120 s
#                              (inductor, forward + backward of 8 layers, cold cache)
#   total              ~545 s  then L = 16 (dus + transformers eager, ~65 s) only where the GPU
#                              has >= 100 GiB and 90 s are left. The report puts the estimate
#                              beside the measured time of each step.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
T_START=$(date +%s)
DRY=${DUS_GPU_DRY_RUN:-0}
BUDGET_S=${DUS_GPU_BUDGET_S:-570}
RESERVE_S=12  # kept back for the report and the archive
JOBS=${JOBS:-$(nproc)}
export PYTHONUNBUFFERED=1  # a python step cut off by its timeout still leaves its log
if [ "$DRY" = 1 ]; then
  BUILD_DIR=${DUS_BUILD_DIR:-build}
  PYTHON=${PYTHON:-${XDG_CACHE_HOME:-$HOME/.cache}/dus-trainer/venv/bin/python}
  DEVICE=cpu
else
  BUILD_DIR=${DUS_BUILD_DIR:-build-gpu}
  PYTHON=${PYTHON:-python3}
  DEVICE=cuda
fi
WORK=${DUS_GPU_WORK:-/tmp/dus-gpu-work}
OUT_DIR=${OUT_DIR:-${OUT:-$BUILD_DIR/out}}
DUS=$ROOT/$BUILD_DIR/dus
LOGS=$WORK/logs
REPORT=$OUT_DIR/gpu_report.md
rm -rf "$WORK"
mkdir -p "$LOGS" "$WORK/runs" "$WORK/data" "$OUT_DIR"
: >"$WORK/steps.tsv"

say() { echo "gpu_run: $*" | tee -a "$LOGS/gpu_run.log"; }
info() { echo "$1=$2" >>"$WORK/info.env"; }
elapsed() { echo $(($(date +%s) - T_START)); }
render() {
  info elapsed_s "$(elapsed)"
  "$PYTHON" scripts/gpu_report.py report --work "$WORK" --out "$REPORT" >/dev/null 2>>"$LOGS/report_errors.log" ||
    say "report rendering failed (see logs/report_errors.log)"
}
record() {  # record ID RC SECONDS LIMIT EXPECT LOG NOTE
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >>"$WORK/steps.tsv"
}
skip() {  # skip ID EXPECT REASON
  record "$1" skip 0 0 "$2" "" "$3"
  say "$1: skipped ($3)"
  render
}
# step ID LIMIT_S EXPECT_RC NOTE -- COMMAND...: runs COMMAND under timeout (clipped to the wall
# budget) with its output in logs/ID.log; records the exit code and seconds; returns 0 when the
# exit code is the expected one. timeout signals the whole process group, so ranks started by
# `dus launch` die with it.
step() {
  local id=$1 limit=$2 expect=$3 note=$4
  shift 5
  local left=$((BUDGET_S - $(elapsed) - RESERVE_S))
  if [ "$left" -lt 5 ]; then
    skip "$id" "$expect" "wall budget spent"
    return 1
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  say "$id: start (limit ${limit} s, $(elapsed) s elapsed)"
  local t0 t1 rc
  t0=$(date +%s.%N)
  timeout -k 5 "$limit" "$@" >"$LOGS/$id.log" 2>&1
  rc=$?
  t1=$(date +%s.%N)
  local secs
  secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.1f", b - a}')
  [ "$rc" = 124 ] && note="${note:+$note; }timed out after $limit s"
  record "$id" "$rc" "$secs" "$limit" "$expect" "$id.log" "$note"
  say "$id: rc $rc (want $expect), $secs s"
  render
  [ "$rc" = "$expect" ]
}
finish() {
  render
  # At most 8 files come back from the device: the report and one archive of everything else.
  tar -czf "$OUT_DIR/gpu_logs.tar.gz" -C "$WORK" logs steps.tsv info.env recipes \
    $(cd "$WORK" && ls -d runs/*/metrics.jsonl runs/*/recipe.yaml runs/*/run_info.json runs/*/recovery.json 2>/dev/null) \
    2>/dev/null || true
  say "done in $(elapsed) s: $REPORT"
  echo
  cat "$WORK/report_console.md"  # the file's content, with the summary last
  grep -q '^overall: PASS' "$REPORT"
  exit $?
}

info date "$(date -u +%FT%TZ)"
# The device gets a copy of the working tree without .git: pass DUS_GPU_COMMIT to name the commit.
info commit "${DUS_GPU_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}"
info mode "$([ "$DRY" = 1 ] && echo dry-run || echo gpu)"
info cores "$(nproc)"
info budget_s "$BUDGET_S"
# PREFIX:SECONDS of the header's estimate; the report sums the steps whose id starts with PREFIX.
info estimate "configure:20;build:200;kernels_:35;corpus:2;tokenizer:8;prepare:4;base_train:15;dus_:40;launch:45;bench_dus_L8:30;hf_eager_L8:25;hf_compile_L8:120"
"$PYTHON" - >>"$WORK/info.env" 2>>"$LOGS/gpu_run.log" <<'EOF'
import torch
print(f"torch={torch.__version__} (CUDA {torch.version.cuda})")
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print(f"gpu={p.name}, {p.multi_processor_count} SMs, compute capability {p.major}.{p.minor}")
    print(f"gpu_memory={p.total_memory / 2**30:.1f} GiB")
    print(f"gpu_memory_gib={p.total_memory / 2**30:.0f}")
try:
    import transformers
    print(f"transformers={transformers.__version__}")
except ImportError:
    print("transformers=not installed")
EOF
if command -v nvidia-smi >/dev/null; then
  info driver "$(nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null | head -1)"
fi
info device "$DEVICE"
if grep -rqs DUS_SHARE_GPUS train/ cli/; then info share_gpus yes; else info share_gpus "NO (missing)"; fi

# ---------------------------------------------------------------------------------------------
# 1. Prefix, configure, build.
if [ "$DRY" = 1 ]; then
  say "dry run: steps 1-2 skipped, using $BUILD_DIR (scripts/build.sh) on the CPU"
  for id in configure build; do record "$id" skip 0 0 0 "" "dry run: $BUILD_DIR from scripts/build.sh"; done
  for id in kernels_gpu kernels_selftest; do record "$id" skip 0 0 0 "" "dry run: no GPU"; done
  [ -x "$DUS" ] || { say "no $DUS: run scripts/build.sh first"; exit 2; }
else
  BUNDLE=$ROOT/.gpu-bundle
  PREFIX=${DUS_GPU_PREFIX:-/tmp/dus-prefix}
  [ -d "$BUNDLE/debs" ] || { say "no $BUNDLE/debs: run scripts/gpu_bundle.sh on a development machine and carry .gpu-bundle"; exit 2; }
  # The prefix. .pc files say prefix=/usr: rewrite them to the prefix.
  mkdir -p "$PREFIX"
  for deb in "$BUNDLE"/debs/*.deb; do dpkg -x "$deb" "$PREFIX"; done
  # Absolute symlinks (libz.so -> /lib/x86_64-linux-gnu/libz.so.1.2.13) point into the prefix.
  find "$PREFIX" -type l | while read -r link; do
    target=$(readlink "$link")
    case "$target" in /*) ln -sfn "$PREFIX$target" "$link" ;; esac
  done
  MULTIARCH=x86_64-linux-gnu
  PC_DIRS="$PREFIX/usr/lib/$MULTIARCH/pkgconfig:$PREFIX/usr/share/pkgconfig:$PREFIX/usr/lib/pkgconfig"
  # Debian's libzstd.pc says libdir=${exec_prefix}/lib while its .so is in the multiarch folder
  # (a system linker searches both; CMake's pkg_check_modules only the libdir and the system).
  for pc in $(find "$PREFIX/usr" -name '*.pc'); do
    sed -i "s|^prefix=/usr\$|prefix=$PREFIX/usr|; s|=/usr/|=$PREFIX/usr/|g" "$pc"
    sed -i "s|^libdir=\${exec_prefix}/lib\$|libdir=\${exec_prefix}/lib/$MULTIARCH|" "$pc"
  done
  export PKG_CONFIG_PATH="$PC_DIRS${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
  # Also for running: dus links the prefix's libyaml-cpp and libsentencepiece.
  export LD_LIBRARY_PATH="$PREFIX/usr/lib/$MULTIARCH${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  PKG_CONFIG_ARG=()
  if ! command -v pkg-config >/dev/null; then
    # The bundled pkgconf (Debian's pkg-config), with its library from the prefix.
    PKG_CONFIG_ARG=(-DPKG_CONFIG_EXECUTABLE="$PREFIX/usr/bin/pkgconf")
    export PATH="$PREFIX/usr/bin:$PATH"
  fi
  say "prefix $PREFIX; pkg-config: $(pkg-config --modversion yaml-cpp sentencepiece libzstd libpcre2-8 libutf8proc 2>&1 | paste -sd' ' -)"
  # Configure against the machine's torch. Its nccl.h lives in the nvidia-nccl wheel.
  TORCH_PREFIX=$("$PYTHON" -c 'import torch.utils; print(torch.utils.cmake_prefix_path)')
  [ -d /usr/local/cuda/bin ] && export PATH="$PATH:/usr/local/cuda/bin"
  info nvcc "$(nvcc --version 2>/dev/null | tail -1 || echo 'not on PATH')"
  GENERATOR=()
  [ ! -f "$BUILD_DIR/CMakeCache.txt" ] && command -v ninja >/dev/null && GENERATOR=(-G Ninja)
  mkdir -p "$BUILD_DIR"
  step configure 120 0 "" -- cmake -S . -B "$BUILD_DIR" "${GENERATOR[@]}" -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_PREFIX_PATH="$TORCH_PREFIX;$PREFIX/usr" \
    -DCMAKE_INCLUDE_PATH="$PREFIX/usr/include" \
    -DCMAKE_LIBRARY_PATH="$PREFIX/usr/lib/$MULTIARCH;$PREFIX/lib/$MULTIARCH" \
    -DZLIB_INCLUDE_DIR="$PREFIX/usr/include" \
    -DPython3_EXECUTABLE="$(command -v "$PYTHON")" -DDUS_PYTHON="$(command -v "$PYTHON")" \
    -DDUS_CUDA=ON "${PKG_CONFIG_ARG[@]}"
  tail -5 "$LOGS/configure.log"
  if ! grep -q "DUS: CUDA kernels ON" "$LOGS/configure.log"; then
    say "CUDA kernels are OFF in this configuration"
    record configure 3 0 0 0 configure.log "CUDA kernels OFF"
  fi
  [ "${DUS_GPU_CONFIGURE_ONLY:-0}" = 1 ] && { say "configured (DUS_GPU_CONFIGURE_ONLY)"; exit 0; }
  # Both targets in one invocation (they share the libraries; two invocations would serialise the
  # test's own files behind the link of dus), going on past a failure so that a broken test file
  # cannot keep `dus` from linking, or the reverse.
  KEEP_GOING=(-k)
  grep -q '^CMAKE_GENERATOR:INTERNAL=Ninja' "$BUILD_DIR/CMakeCache.txt" 2>/dev/null && KEEP_GOING=(-k 0)
  step build 400 0 "targets dus test_kernels, -j $JOBS" -- cmake --build "$BUILD_DIR" --target dus test_kernels -j "$JOBS" -- "${KEEP_GOING[@]}"
  info built_dus "$([ -x "$DUS" ] && echo yes || echo NO)"
  info built_test_kernels "$([ -x "$BUILD_DIR/tests/test_kernels" ] && echo yes || echo NO)"

  # -------------------------------------------------------------------------------------------
  # 2. Kernel op tests, then the self-test table (resolve_kernels logs the per-op errors to
  # stderr in that test case).
  if [ -x "$BUILD_DIR/tests/test_kernels" ]; then
    step kernels_gpu 90 0 "" -- "$BUILD_DIR/tests/test_kernels" "[gpu]" --durations yes
    step kernels_selftest 60 0 "" -- "$BUILD_DIR/tests/test_kernels" \
      "kernels: auto on the GPU turns on every op that passes its self-test"
  else
    skip kernels_gpu 0 "test_kernels did not build"
    skip kernels_selftest 0 "test_kernels did not build"
  fi
fi

# ---------------------------------------------------------------------------------------------
# 3. Corpus, tokenizer, base, DUS straight / killed + resumed.
if [ "$DRY" = 1 ]; then
  # Tiny: the tests' model (recipes/tests/tiny_model.json) on 2 CPU cores.
  CORPUS_BYTES=300000 VOCAB=512 HIDDEN=64 HEADS=4 KV=2 HEAD_DIM=16 INTER=160 SEQ=64
  GLOBAL_SEQS=8 MICRO=4 BASE_STEPS=8 DUS_STEPS=8 CKPT_EVERY=3 KILL_AT=5 EVAL_EVERY=4
  PRECISION=${DUS_GPU_DRY_PRECISION:-fp32} DIST_RTOL=1e-5 THREADS=2
else
  # Small but GPU-shaped (head_dim 64, GQA 2:1): 8,192 tokens a step in 2 micro-batches of 8.
  CORPUS_BYTES=4000000 VOCAB=2048 HIDDEN=512 HEADS=8 KV=4 HEAD_DIM=64 INTER=1536 SEQ=512
  GLOBAL_SEQS=16 MICRO=8 BASE_STEPS=40 DUS_STEPS=24 CKPT_EVERY=8 KILL_AT=13 EVAL_EVERY=12
  PRECISION=bf16 DIST_RTOL=1e-2 THREADS=4
fi
info dus_steps "$DUS_STEPS"
info kill_at "$KILL_AT"
info dist_rtol "$DIST_RTOL"
DATA=$WORK/data
RECIPES=$WORK/recipes
mkdir -p "$RECIPES"
"$PYTHON" scripts/gpu_report.py model --out "$RECIPES/base_model.json" --hidden $HIDDEN --layers 4 \
  --heads $HEADS --kv-heads $KV --head-dim $HEAD_DIM --intermediate $INTER --vocab $VOCAB --max-positions $((SEQ * 2))
# The base: from scratch, 4 layers. checkpoint.every large: only the final model matters here.
cat >"$RECIPES/base.yaml" <<EOF
# gpu_run.sh: from-scratch base for the DUS run ($GLOBAL_SEQS x $SEQ = $((GLOBAL_SEQS * SEQ)) tokens a step).
run: {name: gpu-base, seed: 7, threads: $THREADS}
model: {config: $RECIPES/base_model.json}
data: {train: [$DATA/prepared], tokenizer: $DATA/tokenizer/tokenizer.model, seq_len: $SEQ}
train: {steps: $BASE_STEPS, global_batch_tokens: $((GLOBAL_SEQS * SEQ)), micro_batch: $MICRO, lr: 3.0e-3,
        lr_min: 3.0e-4, lr_schedule: cosine, warmup_steps: 4, precision: $PRECISION}
eval: {every: $BASE_STEPS, sequences: 16, batch: 8}
checkpoint: {every: $BASE_STEPS, keep: 1}
log: {every: 8}
kernels: auto
EOF
# DUS m = 1: 4 -> 2 x (4 - 1) = 6 layers, continued pretraining with frequent checkpoints.
cat >"$RECIPES/dus.yaml" <<EOF
# gpu_run.sh: DUS m=1 of the base, $PRECISION, kernels auto; checkpoints every $CKPT_EVERY steps.
extends: base.yaml
run: {name: gpu-dus}
model: {config: null, init_from: $WORK/runs/base/final}
scaling: {method: dus, m: 1}
train: {steps: $DUS_STEPS, lr: 1.0e-3, lr_min: 1.0e-4, warmup_steps: 4}
eval: {every: $EVAL_EVERY}
checkpoint: {every: $CKPT_EVERY, keep: 3}
log: {every: 4}
EOF
step corpus 60 0 "$CORPUS_BYTES bytes" -- "$PYTHON" scripts/gpu_report.py corpus --out "$DATA/corpus.txt" --bytes "$CORPUS_BYTES"
step tokenizer 90 0 "vocab $VOCAB" -- "$DUS" tokenizer train --input "$DATA/corpus.txt" --lines --vocab-size "$VOCAB" \
  --out "$DATA/tokenizer"
step prepare 90 0 "" -- "$DUS" prepare --tokenizer "$DATA/tokenizer/tokenizer.model" --input "$DATA/corpus.txt" --lines \
  --out "$DATA/prepared" --val-fraction 0.02 --quiet
R=$WORK/runs
step base_train 120 0 "$BASE_STEPS steps, 4 layers" -- "$DUS" train "$RECIPES/base.yaml" --run-dir "$R/base"
step dus_straight 120 0 "$DUS_STEPS steps" -- "$DUS" train "$RECIPES/dus.yaml" --run-dir "$R/straight"
# SIGKILL inside step KILL_AT (after its forward): the shell sees 128 + 9.
step dus_killed 120 137 "SIGKILL in step $KILL_AT" -- env DUS_TEST_KILL_AT_STEP="$KILL_AT" \
  "$DUS" train "$RECIPES/dus.yaml" --run-dir "$R/killed"
step dus_resume 120 0 "" -- "$DUS" resume "$R/killed"

# ---------------------------------------------------------------------------------------------
# 4. Data parallel. One rank under `dus launch`: the launcher's environment, no process group
# (WORLD_SIZE 1). Two ranks on the one GPU, ddp and zero1, so that NCCL runs:
#   launch2_*: DUS_SHARE_GPUS=1 dus launch --nproc 2 (the trainer's opt-in for ranks sharing a
#              device), where the sources have it; in the dry run always (Gloo on the CPU);
#   hand2_*:   the two ranks started by hand (gpu_report.py ranks): LOCAL_RANK=0 for both and an
#              NCCL_HOSTID per rank, since NCCL refuses two ranks of one host on one device
#              ("Duplicate GPU detected"); runs when launch2_* is absent or failed, and always in
#              the dry run. Works without the opt-in.
# A stuck collective errors after distributed.timeout_s, inside the step's limit.
DIST_SET=(--set distributed.timeout_s=60)
# Dry run: two ranks of 2 threads would oversubscribe the 2 cores (as tests/python/test_distributed.py).
[ "$DRY" = 1 ] && DIST_SET+=(--set run.threads=1)
export NCCL_DEBUG=${NCCL_DEBUG:-WARN}
SHARE=$(sed -n 's/^share_gpus=//p' "$WORK/info.env")
step launch1 90 0 "" -- "$DUS" launch --nproc 1 -- train "$RECIPES/dus.yaml" --run-dir "$R/launch1"
for strategy in ddp zero1; do
  launched=no
  if [ "$SHARE" = yes ] || [ "$DRY" = 1 ]; then
    step "launch2_$strategy" 120 0 "DUS_SHARE_GPUS=1" -- env DUS_SHARE_GPUS=1 "$DUS" launch --nproc 2 --grace 10 -- \
      train "$RECIPES/dus.yaml" --run-dir "$R/launch2_$strategy" "${DIST_SET[@]}" --set distributed.strategy=$strategy &&
      launched=yes
  else
    skip "launch2_$strategy" 0 "no DUS_SHARE_GPUS in train/ or cli/: rank 1 would ask for cuda:1"
  fi
  if [ "$launched" = no ] || [ "$DRY" = 1 ]; then
    step "hand2_$strategy" 120 0 "LOCAL_RANK=0, NCCL_HOSTID per rank" -- "$PYTHON" scripts/gpu_report.py ranks --nproc 2 -- \
      "$DUS" train "$RECIPES/dus.yaml" --run-dir "$R/hand2_$strategy" "${DIST_SET[@]}" --set distributed.strategy=$strategy
  fi
done

# ---------------------------------------------------------------------------------------------
# 5-6. Speed: dus bench train vs transformers (eager, compiled) on the same shapes.
BENCH_HELP=$("$DUS" bench train --help 2>&1)
HAS_DEVICE=no HAS_LAYERS=no
grep -q -- "--device" <<<"$BENCH_HELP" && HAS_DEVICE=yes
grep -q -- "--layers" <<<"$BENCH_HELP" && HAS_LAYERS=yes
info bench_device_flag "$HAS_DEVICE"
info bench_layers_flag "$HAS_LAYERS"
if [ "$DRY" = 1 ]; then
  BENCH_CONFIG=recipes/tests/tiny_model.json BENCH_LAYERS=${DUS_GPU_BENCH_LAYERS:-2}
  BENCH_SHAPE=(--batch 2 --seq 64 --steps 3 --warmup 1)
  BENCH_PRECISION=$PRECISION
  DUS_BENCH_EXTRA=(--threads 2 --matmul-seconds 0.2)
  # aot_eager: the same torch.compile call and timing, without inductor's C++ compilation (two
  # minutes on 2 cores); the GPU run uses inductor.
  HF_EXTRA=(--threads 2)
  HF_COMPILE_EXTRA=(--compile-backend aot_eager)
else
  BENCH_CONFIG=recipes/configs/mistral-7b-v0.1.json BENCH_LAYERS=${DUS_GPU_BENCH_LAYERS:-8}
  BENCH_SHAPE=(--batch 1 --seq 4096 --steps 5 --warmup 2)
  BENCH_PRECISION=bf16
  DUS_BENCH_EXTRA=()
  HF_EXTRA=()
  HF_COMPILE_EXTRA=()
fi
GPU_GIB=$(sed -n 's/^gpu_memory_gib=//p' "$WORK/info.env")
EXTRA_LAYERS=""
# 16 layers: ~3.7 B parameters, ~60 GB of weights, masters and moments before activations.
if [ "$DRY" != 1 ] && [ -z "${DUS_GPU_BENCH_LAYERS:-}" ] && [ "${GPU_GIB:-0}" -ge 100 ]; then EXTRA_LAYERS=16; fi
info bench_layers "$BENCH_LAYERS${EXTRA_LAYERS:+ $EXTRA_LAYERS}"
info bench_shape "$(basename "$BENCH_CONFIG") with L layers, ${BENCH_SHAPE[*]}, $BENCH_PRECISION, device $DEVICE"

bench_dus() {  # bench_dus L
  local L=$1 args=(bench train --config "$BENCH_CONFIG" "${BENCH_SHAPE[@]}" --precision "$BENCH_PRECISION" "${DUS_BENCH_EXTRA[@]}")
  if [ "$HAS_LAYERS" = yes ]; then
    args+=(--layers "$L")
  else
    "$PYTHON" scripts/gpu_report.py layers --config "$BENCH_CONFIG" --layers "$L" --out "$WORK/bench_L$L.json"
    args[3]=$WORK/bench_L$L.json
  fi
  if [ ! -x "$DUS" ]; then
    skip "bench_dus_L$L" 0 "dus did not build"
    return
  fi
  if [ "$HAS_DEVICE" = yes ]; then
    args+=(--device "$DEVICE")
  elif [ "$DEVICE" != cpu ]; then
    skip "bench_dus_L$L" 0 "this build's dus bench train has no --device (the lead's branch adds it)"
    return
  fi
  step "bench_dus_L$L" 240 0 "$([ "$HAS_LAYERS" = yes ] && echo "--layers $L" || echo "config copy with $L layers")" -- "$DUS" "${args[@]}"
}
bench_hf() {  # bench_hf L eager|compile
  local L=$1 mode=$2 extra=()
  [ "$mode" = compile ] && extra=(--compile "${HF_COMPILE_EXTRA[@]}")
  step "hf_${mode}_L$L" "$([ "$mode" = compile ] && echo 240 || echo 120)" 0 "" -- "$PYTHON" scripts/bench_hf_train.py \
    --config "$BENCH_CONFIG" --layers "$L" "${BENCH_SHAPE[@]}" --precision "$BENCH_PRECISION" --device "$DEVICE" \
    "${HF_EXTRA[@]}" "${extra[@]}"
}
bench_dus "$BENCH_LAYERS"
bench_hf "$BENCH_LAYERS" eager
if [ "${DUS_GPU_SKIP_COMPILE:-0}" = 1 ]; then skip "hf_compile_L$BENCH_LAYERS" 0 "DUS_GPU_SKIP_COMPILE=1"; else bench_hf "$BENCH_LAYERS" compile; fi
if [ -n "$EXTRA_LAYERS" ]; then
  if [ $((BUDGET_S - $(elapsed) - RESERVE_S)) -ge 90 ]; then
    bench_dus "$EXTRA_LAYERS"
    bench_hf "$EXTRA_LAYERS" eager
  else
    skip "bench_dus_L$EXTRA_LAYERS" 0 "less than 90 s of the wall budget left"
    skip "hf_eager_L$EXTRA_LAYERS" 0 "less than 90 s of the wall budget left"
  fi
fi
finish
