#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz/fuzz_*.cpp) with clang + AddressSanitizer + UBSan from
# the torch-free sources they need, and runs each for a bounded time on its seed corpus
# (tests/fuzz/corpus/<target>/, real files of the project; tests/fuzz/<target>.dict when there is
# one). Prints per target: executions, exec/s, new crashes, corpus size. Exits non-zero on any crash (the reproducer is kept under
# BUILD_DIR/crashes/<target>/). Objects are rebuilt only when a source or a header they include
# changed. Cost: about (seconds + a few) per target once built; the first build ~1-2 min.
# Usage: scripts/fuzz.sh [--seconds N] [--target NAME] [--build-dir DIR] [--runs N]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=60
build_dir=build/fuzz
only=""
runs=""
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds="$2"; shift 2 ;;
    --target) only="$2"; shift 2 ;;
    --build-dir) build_dir="$2"; shift 2 ;;
    --runs) runs="$2"; shift 2 ;;
    *) echo "usage: $0 [--seconds N] [--target NAME] [--build-dir DIR] [--runs N]" >&2; exit 2 ;;
  esac
done
command -v clang++ >/dev/null || { echo "fuzz: clang++ not found (apt-get install clang)" >&2; exit 2; }

# Target -> the sources it links (besides tests/fuzz/<target>.cpp), and its largest input.
core="core/json.cpp core/error.cpp core/fmt.cpp"
dataset="data/token_dataset.cpp data/megatron_index.cpp data/dataset_writer.cpp core/file_util.cpp $core"
declare -A sources=(
  [fuzz_safetensors_header]="model/safetensors_header.cpp $core"
  [fuzz_json]="$core"
  [fuzz_model_config]="model/model_config.cpp core/special_token_ids.cpp $core"
  [fuzz_train_state]="train/train_state.cpp train/recovery_tracker.cpp train/task_recovery.cpp
    train/zero1_manifest.cpp
    data/packed_loader.cpp data/packed_sequences.cpp data/sample_order.cpp data/mixture.cpp
    data/special_token_check.cpp core/special_token_ids.cpp $dataset"
  [fuzz_dataset_index]="$dataset"
  [fuzz_megatron_index]="data/megatron_index.cpp $core"
  [fuzz_recipe]="train/recipe.cpp core/suggestion.cpp train/lr_schedule.cpp core/sha256.cpp
    data/megatron_index.cpp data/unicode_text.cpp data/task_file.cpp core/file_util.cpp $core"
  [fuzz_zero1_manifest]="train/zero1_manifest.cpp $core"
  [fuzz_sentencepiece_model]="data/sentencepiece_check.cpp $core"
  [fuzz_tokenizer_json]="data/hf_tokenizer_json.cpp data/tekken.cpp data/bpe.cpp
    data/added_vocabulary.cpp data/split_regex.cpp data/unicode_text.cpp $core"
)
declare -A libs=([fuzz_recipe]="$(pkg-config --libs yaml-cpp libutf8proc 2>/dev/null ||
    echo -lyaml-cpp -lutf8proc)"
  [fuzz_sentencepiece_model]="$(pkg-config --libs sentencepiece 2>/dev/null || echo -lsentencepiece)"
  [fuzz_tokenizer_json]="$(pkg-config --libs libpcre2-8 libutf8proc 2>/dev/null ||
    echo -lpcre2-8 -lutf8proc)")
declare -A max_len=([fuzz_dataset_index]=16384 [fuzz_train_state]=16384 [fuzz_recipe]=4096
  [fuzz_sentencepiece_model]=16384 [fuzz_tokenizer_json]=16384)
all_targets="fuzz_safetensors_header fuzz_json fuzz_model_config fuzz_train_state fuzz_dataset_index
  fuzz_recipe fuzz_zero1_manifest fuzz_sentencepiece_model fuzz_megatron_index
  fuzz_tokenizer_json"
targets="$all_targets"
if [ -n "$only" ]; then
  [ -n "${sources[$only]+x}" ] || { echo "fuzz: unknown target $only ($all_targets)" >&2; exit 2; }
  targets="$only"
fi

# fmt's headers: the copy the CMake build puts beside this build directory.
fmt_include="$(dirname "$build_dir")/fmt-include"
[ -f "$fmt_include/fmt/format.h" ] || {
  echo "fuzz: $fmt_include/fmt/format.h not found: build the project first (scripts/build.sh)" >&2
  exit 2
}
flags=(-std=c++17 -g -O1 -I. -isystem "$fmt_include" -fsanitize=fuzzer-no-link,address,undefined
       -fno-sanitize-recover=undefined)
mkdir -p "$build_dir/obj"
# An object is stale when missing or older than anything its dependency file lists.
stale() {
  local obj="$1" dep="$1.d"
  [ -f "$obj" ] && [ -f "$dep" ] || return 0
  local f
  for f in $(sed -e 's/^[^:]*://' -e 's/\\$//' "$dep"); do
    [ "$f" -nt "$obj" ] && return 0
  done
  return 1
}
build() {
  local t="$1" objs=() src obj
  for src in "tests/fuzz/$t.cpp" ${sources[$t]}; do
    obj="$build_dir/obj/$(echo "$src" | tr / _).o"
    if stale "$obj"; then
      echo "fuzz: compiling $src"
      clang++ "${flags[@]}" -MMD -MF "$obj.d" -c "$src" -o "$obj"
    fi
    objs+=("$obj")
  done
  local bin="$build_dir/$t" o relink=0
  [ -x "$bin" ] || relink=1
  for o in "${objs[@]}"; do [ "$o" -nt "$bin" ] && relink=1; done
  if [ "$relink" = 1 ]; then
    # shellcheck disable=SC2086
    clang++ -fsanitize=fuzzer,address,undefined "${objs[@]}" ${libs[$t]:-} -o "$bin"
  fi
}
# Concurrent ctest runs share the object directory: one builds at a time.
exec 9>"$build_dir/.lock"
flock 9
for t in $targets; do build "$t"; done
flock -u 9

status=0
printf "%-26s %12s %10s %8s %8s\n" target executions exec/s crashes corpus > "$build_dir/summary.txt"
for t in $targets; do
  corpus="$build_dir/corpus/$t"
  crashes="$build_dir/crashes/$t"
  mkdir -p "$corpus" "$crashes"
  seed=tests/fuzz/corpus/$t
  find "$seed" -maxdepth 1 -type f -exec cp -n {} "$corpus/" \; 2>/dev/null || true
  before=$(find "$crashes" -type f | wc -l)
  log="$build_dir/$t.log"
  opts=(-max_total_time="$seconds")
  # A dictionary of the format's keys and syntax, where the target has one.
  [ -f "tests/fuzz/$t.dict" ] && opts+=(-dict="tests/fuzz/$t.dict")
  [ -n "$runs" ] && opts[0]=-runs="$runs"
  if [ -n "$runs" ]; then echo "fuzz: running $t ($runs runs)"; else echo "fuzz: running $t (${seconds}s)"; fi
  rc=0
  ASAN_OPTIONS=detect_leaks=1 "$build_dir/$t" "${opts[@]}" -max_len="${max_len[$t]:-4096}" \
    -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 -artifact_prefix="$crashes/" \
    "$corpus" > "$log" 2>&1 || rc=$?
  after=$(find "$crashes" -type f | wc -l)
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  size=$(find "$corpus" -type f | wc -l)
  new=$((after - before))
  printf "%-26s %12s %10s %8s %8s\n" "$t" "${execs:-?}" "${rate:-?}" "$new" "$size" \
    | tee -a "$build_dir/summary.txt"
  if [ "$rc" != 0 ] || [ "$new" != 0 ]; then
    echo "fuzz: $t FAILED (exit $rc); log $log, reproducers in $crashes/" >&2
    grep -m 5 -E "ERROR|runtime error|terminate|SUMMARY" "$log" >&2 || tail -n 20 "$log" >&2
    status=1
  fi
done
cat "$build_dir/summary.txt"
[ "$status" = 0 ] && echo "fuzz: clean"
exit "$status"
