#!/usr/bin/env bash
# partition-test.sh: runs it_partition (issue 12: linearizability under
# network partitions, kills and freezes) against a build directory.
#
#   scripts/partition-test.sh [criterion args...]
#     e.g. --filter 'partition/primary_cut_from_coordinator'
#
# Needs root (network namespaces, iptables) and Go (kv-lincheck, built here
# by tools/linearizability/build.sh). KV_BUILD_DIR (default build/asan)
# names the build; KV_PARTITION_SECONDS (default 60) the length of each
# scenario; KV_PARTITION_KEEP=1 keeps logs and histories under /tmp.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
build=${KV_BUILD_DIR:-build/asan}

if [ "$(id -u)" -ne 0 ]; then
    echo "partition-test: needs root (network namespaces)" >&2
    exit 1
fi
if [ ! -x "$build/tests/it_partition" ]; then
    echo "partition-test: $build/tests/it_partition not built (make asan)" >&2
    exit 1
fi
tools/linearizability/build.sh "$build/tools/kv-lincheck"
exec "$build/tests/it_partition" --jobs 1 "$@"
