#!/usr/bin/env bash
# run-tests.sh: the entry point of the kvstore-tests image (`kv-tests`).
#
#   contract            the API contract against $KV_URL (the default command)
#   stress [ARGS...]    kv-stress against $KV_URL, ARGS passed on (its
#                       defaults: 100,000 sets over 50 connections, zero errors)
#   wait                wait until $KV_URL/healthcheck answers 200
#   help                this text
#   anything else       run as a command (sh, curl ..., kv-stress --help)
#
# In compose, KV_URL is http://haproxy:8080: the tests go through the load
# balancer as a client would.
set -euo pipefail

SHARE=/usr/local/share/kvstore-tests
KV_URL=${KV_URL:-http://haproxy:8080}
export KV_URL

wait_healthy() {
    local limit=${KV_WAIT_TIMEOUT:-60} deadline
    deadline=$((SECONDS + limit))
    until curl -fsS --max-time 2 -o /dev/null "$KV_URL/healthcheck" 2>/dev/null; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            echo "kv-tests: $KV_URL/healthcheck not healthy after ${limit}s" >&2
            return 1
        fi
        sleep 1
    done
}

cmd=${1:-contract}
[ $# -gt 0 ] && shift
case $cmd in
contract)
    exec "$SHARE/api-contract.sh" "$@"
    ;;
stress)
    if ! command -v kv-stress >/dev/null 2>&1; then
        reason=$(cat /usr/local/share/kvstore/kv-stress.unavailable 2>/dev/null ||
            echo "kv-stress was not built into this image")
        echo "kv-tests: cannot run the stress test: $reason." >&2
        echo "kv-tests: rebuild the image once tools/stress builds kv-stress: docker compose build tests" >&2
        exit 2
    fi
    wait_healthy
    # kv-stress reads its target from KV_STRESS_URL; KV_STRESS_ARGS holds
    # default arguments, and those on the command line come after and win.
    export KV_STRESS_URL=${KV_STRESS_URL:-$KV_URL}
    # shellcheck disable=SC2086 # word splitting of the default arguments is intended
    exec kv-stress ${KV_STRESS_ARGS:-} "$@"
    ;;
wait)
    wait_healthy
    ;;
help | --help | -h)
    sed -n '2,/^set -/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
    ;;
*)
    exec "$cmd" "$@"
    ;;
esac
