#!/usr/bin/env bash
# stress.sh: what `make stress` runs. kv-stress against the cluster at
# KV_STRESS_URL (default http://127.0.0.1:$KV_HTTP_PORT, port 8080). When
# nothing answers /healthcheck there (and the URL was not given explicitly),
# a cluster is started with scripts/run-local.sh in the background, used,
# and stopped afterwards, so the command is self-contained.
#
# Arguments go to kv-stress; its defaults are the acceptance run: 100,000
# sets over 50 connections, which must end with zero errors.
#   make stress
#   make stress STRESS_ARGS="--mix set=50,get=40,rm=10 --requests 500000"
#   tools/stress/stress.sh --help
# The exit status is kv-stress's: 0 only when every request succeeded.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT" || exit 2

BUILD_DIR=${KV_BUILD_DIR:-build/release}
STRESS=$BUILD_DIR/tools/kv-stress
PORT=${KV_HTTP_PORT:-8080}
URL=${KV_STRESS_URL:-http://127.0.0.1:$PORT}
START_TIMEOUT=${KV_START_TIMEOUT:-30}

say() { printf '[stress] %s\n' "$*" >&2; }

[ -x "$STRESS" ] || {
    say "$STRESS is missing: run make first"
    exit 2
}
for arg in "$@"; do
    [ "$arg" = --help ] && exec "$STRESS" --help
done

healthy() { curl -fsS -o /dev/null --max-time 1 "$URL/healthcheck" 2>/dev/null; }

CLUSTER=
stop_cluster() {
    [ -n "$CLUSTER" ] || return 0
    say "stopping the cluster this run started (log: $LOG)"
    kill -TERM "$CLUSTER" 2>/dev/null
    wait "$CLUSTER" 2>/dev/null
    CLUSTER=
}

if healthy; then
    say "using the cluster already answering on $URL"
elif [ -n "${KV_STRESS_URL:-}" ]; then
    say "nothing healthy answers on $KV_STRESS_URL"
    exit 2
else
    LOG=$(mktemp /tmp/kv-stress-cluster.XXXXXX)
    say "no cluster on $URL: starting one with scripts/run-local.sh (log: $LOG)"
    KV_BUILD_DIR=$BUILD_DIR KV_HTTP_PORT=$PORT scripts/run-local.sh >"$LOG" 2>&1 &
    CLUSTER=$!
    trap stop_cluster EXIT
    trap 'stop_cluster; exit 130' INT TERM
    deadline=$((SECONDS + START_TIMEOUT))
    until healthy; do
        if ! kill -0 "$CLUSTER" 2>/dev/null || [ "$SECONDS" -ge "$deadline" ]; then
            say "the cluster did not become healthy; last lines of $LOG:"
            tail -5 "$LOG" >&2
            exit 1
        fi
        sleep 0.2
    done
fi

"$STRESS" --url "$URL" "$@"
