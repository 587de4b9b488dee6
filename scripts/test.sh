#!/usr/bin/env bash
# The test command: set-up (idempotent), configure + build (Release, ccache), then every test.
#   scripts/test.sh           everything CI runs
#   scripts/test.sh --quick   skip tests labelled "slow" (for development)
#   scripts/test.sh -R NAME   pass extra arguments to ctest
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
scripts/setup.sh
scripts/build.sh
ctest_args=(--test-dir "${DUS_BUILD_DIR:-build}" --output-on-failure -j 2 --timeout 1200)
if [ "${1:-}" = "--quick" ]; then
  ctest_args+=(-LE slow)
  shift
fi
ctest "${ctest_args[@]}" "$@"
echo "test.sh: all tests passed in $(( $(date +%s) - start )) s"
