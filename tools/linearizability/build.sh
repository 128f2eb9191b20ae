#!/usr/bin/env bash
# build.sh: builds kv-lincheck, the linearizability checker of the partition
# tests, into build/tools/kv-lincheck (or the path given as $1).
#
# Needs Go (/usr/local/go/bin or on PATH) and the porcupine module, which
# scripts/install-deps.sh downloads (`go mod download`); the build itself
# does not touch the network (GOFLAGS=-mod=readonly, GOPROXY=off when the
# module cache already holds it).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${1:-$root/build/tools/kv-lincheck}
case $out in /*) ;; *) out=$PWD/$out ;; esac
export PATH=$PATH:/usr/local/go/bin

if ! command -v go >/dev/null 2>&1; then
    echo "build.sh: go not found (expected in /usr/local/go/bin)" >&2
    exit 1
fi
mkdir -p "$(dirname "$out")"
cd "$here"
# Offline when the module is already in the cache, so a test run never
# waits on the network; otherwise the configured proxy is used once.
if GOFLAGS=-mod=readonly GOPROXY=off go list -m github.com/anishathalye/porcupine >/dev/null 2>&1; then
    export GOPROXY=off
fi
GOFLAGS=-mod=readonly go build -o "$out" .
echo "build.sh: built $out"
