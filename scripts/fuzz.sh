#!/usr/bin/env bash
# Builds the libFuzzer target for the safetensors header parser with clang + AddressSanitizer +
# UBSan and runs it for a bounded time on the seed corpus. Exits non-zero on any crash.
# Usage: scripts/fuzz.sh [--seconds N] [--build-dir DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=60
build_dir=build/fuzz
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds="$2"; shift 2 ;;
    --build-dir) build_dir="$2"; shift 2 ;;
    *) echo "usage: $0 [--seconds N] [--build-dir DIR]" >&2; exit 2 ;;
  esac
done
command -v clang++ >/dev/null || { echo "fuzz: clang++ not found (apt-get install clang)" >&2; exit 2; }
mkdir -p "$build_dir/corpus"
bin="$build_dir/fuzz_safetensors_header"
sources=(tests/fuzz/fuzz_safetensors_header.cpp model/safetensors_header.cpp model/json.cpp model/error.cpp)
# Rebuild only when a source is newer than the binary.
if [ ! -x "$bin" ] || [ -n "$(find "${sources[@]}" model/*.h -newer "$bin" 2>/dev/null)" ]; then
  clang++ -std=c++17 -g -O1 -I. -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    "${sources[@]}" -o "$bin"
fi
cp -n tests/fuzz/corpus/* "$build_dir/corpus/" 2>/dev/null || true
echo "fuzz: running $bin for ${seconds}s"
ASAN_OPTIONS=detect_leaks=1 "$bin" -max_total_time="$seconds" -max_len=4096 -rss_limit_mb=2048 \
  -print_final_stats=1 "$build_dir/corpus" 2>&1 | tail -n 12
echo "fuzz: clean"
