#!/usr/bin/env bash
# coverage.sh: line and branch coverage of the test suite.
#
# Builds an instrumented Debug tree in build/coverage (-DKV_COVERAGE=ON), runs
# ctest there, and has gcovr report on the project's library and process code
# (common/ proto/ node/ coordinator/ gateway/; tests/ themselves are left out).
# Prints the per-file table and the totals, and writes the browsable report to
# build/coverage/coverage.html. The report is written even when a test fails,
# but the script then exits non-zero.
#
# Environment: KV_COVERAGE_DIR (default build/coverage), CTEST_ARGS (extra
# ctest arguments, e.g. "-R kv_store").
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

BUILD_DIR=${KV_COVERAGE_DIR:-build/coverage}
JOBS=$(nproc 2>/dev/null || echo 2)

echo "==> configure and build $BUILD_DIR"
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Debug -DKV_COVERAGE=ON >/dev/null
cmake --build "$BUILD_DIR" -j "$JOBS"

# Counters from an earlier run would add up with this one's.
find "$BUILD_DIR" -name '*.gcda' -delete

echo "==> ctest"
test_status=0
# shellcheck disable=SC2086 # CTEST_ARGS is a list of words on purpose
(cd "$BUILD_DIR" && ctest --output-on-failure -j "$JOBS" ${CTEST_ARGS:-}) || test_status=$?

echo "==> gcovr"
gcovr_args=(
    --root "$ROOT"
    --object-directory "$BUILD_DIR"
    --filter 'common/' --filter 'proto/' --filter 'node/'
    --filter 'coordinator/' --filter 'gateway/'
    --exclude 'tests/'
    --exclude-unreachable-branches
    -j "$JOBS"
)
gcovr "${gcovr_args[@]}" --html-details "$BUILD_DIR/coverage.html" --txt - --print-summary

echo
echo "HTML report: $BUILD_DIR/coverage.html"
if [ "$test_status" -ne 0 ]; then
    echo "coverage: ctest failed (exit $test_status); the numbers above are from a failing run" >&2
    exit "$test_status"
fi
