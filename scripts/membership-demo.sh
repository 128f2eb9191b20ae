#!/usr/bin/env bash
# membership-demo.sh: issue 3's acceptance scenario, run by hand, with figures.
#
# Runs tests/it_membership (the criterion test that `make test` runs under
# ASan) against an optimised build, so the timings mean something, and
# prints what it measured: client requests and failures, time per join and
# per leave until /status is balanced, the coordinator's absence, the
# /getKeys checks. Every cluster it starts lives on free loopback ports and
# is stopped before it returns; nothing else on the machine is touched.
#
#   scripts/membership-demo.sh            R=1 (1 -> 5 -> 2 nodes), R=2 (2 -> 5 -> 2),
#                                         and joins/leaves churn: about a minute
#   scripts/membership-demo.sh --big      also 1,000,000 keys in 3 nodes, then a 4th
#                                         node joins (R=1 and R=2): a few minutes
#   scripts/membership-demo.sh --big-only only the 1,000,000-key runs
#
# KV_BUILD_DIR (default build/release) is configured and built first when
# needed. KV_KEEP_LOGS=1 keeps each cluster's logs in /tmp/kvtest-*. The
# exit status is the test's: 0 when every check passed.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 2

BUILD_DIR=${KV_BUILD_DIR:-build/release}
FILTER='membership/*'
case "${1:-}" in
"") ;;
--big) FILTER='*/*' && export KV_BIG_TESTS=1 ;;
--big-only) FILTER='big/*' && export KV_BIG_TESTS=1 ;;
-h | --help)
    sed -n '2,/^set -uo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
    exit 0
    ;;
*)
    echo "usage: $0 [--big | --big-only]" >&2
    exit 2
    ;;
esac

if [ ! -f "$BUILD_DIR/CMakeCache.txt" ]; then
    cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release >/dev/null || exit 2
fi
# kv-stress loads the million keys faster when the build has it (tools/).
targets=(it_membership kv-node kv-coordinator kv-gateway)
if cmake --build "$BUILD_DIR" --target help 2>/dev/null | grep 'kv-stress' >/dev/null; then
    targets+=(kv-stress)
fi
echo "building ${targets[*]} in $BUILD_DIR ..."
cmake --build "$BUILD_DIR" -j"$(nproc)" --target "${targets[@]}" >/dev/null || exit 2

out=$(mktemp /tmp/membership-demo.XXXXXX)
trap 'rm -f "$out"' EXIT
echo "running $BUILD_DIR/tests/it_membership --filter '$FILTER' (figures follow) ..."
"$BUILD_DIR/tests/it_membership" --jobs 1 --filter "$FILTER" >"$out" 2>&1
status=$?

# The figures are the test's "membership:" lines; failures and the
# criterion summary follow them.
echo
sed -n 's/^membership: //p' "$out"
echo
grep -E '^\[(----|FAIL|====)\]' "$out" | grep -v '^\[----\] *$'
exit $status
