#!/usr/bin/env bash
# memory-test.sh: nodes in containers at their memory limit, never killed.
#
# Brings the compose project up (again) with node containers limited to
# KV_MEMTEST_LIMIT (256m, swap disabled) and each node's own limit left to
# its default (90 % of the cgroup's), then:
#
#   0. checks that the limit is real: every node's cgroup memory.max (v2;
#      memory.limit_in_bytes under v1) is KV_MEMTEST_LIMIT and /status shows the derived maxMemoryBytes, so a
#      host that does not enforce limits cannot pass by accident;
#   1. noeviction (2 nodes, R=2: each holds every key): kv-stress writes
#      256-character values until writes are refused 507 OUT_OF_MEMORY;
#      then no node was OOM-killed or restarted, each is under its limit,
#      and reads, /rm and a refused /set behave.
#
# (Eviction's half, a hot set that survives twice the limit written, comes
# with eviction: docs/eviction.md.)
#
# Prints the figures on lines starting "memory:". Run from the repository
# root with the images built (scripts/docker-ci.sh runs it as its "memory"
# step with KV_MEMORY_TEST=1). Environment:
#   KV_URL [http://127.0.0.1:8080]   haproxy, as seen from this host
#   KV_COMPOSE [docker compose, else docker-compose]
#   COMPOSE_PROJECT_NAME [the directory's name]
#   KV_MEMTEST_LIMIT [256m]          the node containers' memory limit
set -uo pipefail

URL=${KV_URL:-http://127.0.0.1:8080}
if [ -n "${KV_COMPOSE:-}" ]; then
    read -r -a COMPOSE <<<"$KV_COMPOSE"
elif docker compose version >/dev/null 2>&1; then
    COMPOSE=(docker compose)
else
    COMPOSE=(docker-compose)
fi
PROJECT=${COMPOSE_PROJECT_NAME:-$(basename "$PWD" | tr '[:upper:]' '[:lower:]' | tr -cd 'a-z0-9_-')}
LIMIT=${KV_MEMTEST_LIMIT:-256m}
VALUE_SIZE=256
START=$SECONDS

say() { printf '[memory %3ds] %s\n' "$((SECONDS - START))" "$*"; }
out() { printf 'memory: %s\n' "$*"; }
fail() {
    say "FAILED: $*"
    exit 1
}
compose() { "${COMPOSE[@]}" "$@"; }

# shellcheck disable=SC2317 # invoked by trap
cleanup() { compose down -v --remove-orphans --timeout 5 >/dev/null 2>&1; }
trap cleanup EXIT

bytes_of() { # 256m -> bytes
    local n=${1%[kKmMgG]} unit=${1: -1}
    case $unit in
    k | K) echo $((n * 1024)) ;;
    m | M) echo $((n * 1024 * 1024)) ;;
    g | G) echo $((n * 1024 * 1024 * 1024)) ;;
    *) echo "$1" ;;
    esac
}
LIMIT_BYTES=$(bytes_of "$LIMIT")

node_containers() {
    docker ps -aq --filter "label=com.docker.compose.project=$PROJECT" \
        --filter "label=com.docker.compose.service=node"
}

wait_healthy() {
    local deadline=$((SECONDS + $1))
    until curl -fsS --max-time 2 -o /dev/null "$URL/healthcheck" 2>/dev/null; do
        [ "$SECONDS" -ge "$deadline" ] && fail "not healthy after $1 s"
        sleep 1
    done
}

# up NODES EVICTION: the project from scratch with that many nodes.
up() {
    compose down -v --remove-orphans --timeout 5 >/dev/null 2>&1
    node_containers | xargs -r docker rm -f >/dev/null 2>&1
    KV_NODE_MEMORY=$LIMIT KV_EVICTION=$2 KV_MIN_NODES=$1 compose up -d --scale "node=$1" \
        >/dev/null 2>&1 || fail "compose up"
    wait_healthy 90
}

# The /status nodes as "id maxMemoryBytes usedMemoryBytes keys" lines.
node_figures() {
    curl -fsS --max-time 5 "$URL/status" |
        jq -r '.nodes[] | select(.state == "active") | "\(.id) \(.maxMemoryBytes) \(.usedMemoryBytes) \(.keys) \(.counters.kv_node_evicted_keys_total // 0)"'
}

check_limits() {
    local c max status_max expected
    expected=$((LIMIT_BYTES * 90 / 100))
    for c in $(node_containers); do
        max=$(docker exec "$c" cat /sys/fs/cgroup/memory.max 2>/dev/null || # cgroup v2, then v1
            docker exec "$c" cat /sys/fs/cgroup/memory/memory.limit_in_bytes)
        [ "$max" = "$LIMIT_BYTES" ] ||
            fail "container $c: cgroup memory limit '$max', not $LIMIT_BYTES: this host does not enforce limits"
    done
    while read -r id status_max _; do
        [ "$status_max" -ge $((expected - 4096)) ] && [ "$status_max" -le $((expected + 4096)) ] ||
            fail "node $id: maxMemoryBytes $status_max, expected 90 % of $LIMIT_BYTES = $expected"
    done < <(node_figures)
    out "cgroup memory.max $LIMIT_BYTES on every node; maxMemoryBytes $expected (90 %)"
}

# Every node container ever started: never OOM-killed, never restarted,
# running, its cgroup usage below the cgroup limit; every node at most
# S_OVERSHOOT past its own limit (docs/memory.md: the write that finds room
# may cut a new dict block, up to 16 KiB, or grow a bucket array).
S_OVERSHOOT=65536
check_survived() {
    local c state usage id max used keys evicted
    for c in $(node_containers); do
        state=$(docker inspect -f '{{.State.Status}} oom={{.State.OOMKilled}} restarts={{.RestartCount}}' "$c")
        usage=$(docker exec "$c" sh -c 'cat /sys/fs/cgroup/memory.current 2>/dev/null ||
            cat /sys/fs/cgroup/memory/memory.usage_in_bytes' 2>/dev/null || echo 0)
        out "container $(docker inspect -f '{{.Name}}' "$c"): $state, cgroup usage $usage of $LIMIT_BYTES"
        case $state in "running oom=false restarts=0") ;; *) fail "container $c: $state" ;; esac
        [ "$usage" -lt "$LIMIT_BYTES" ] || fail "container $c at its cgroup limit"
    done
    while read -r id max used keys evicted; do
        out "node $id: used $used of $max bytes ($((used - max)) past), $keys keys, $evicted evicted"
        [ "$used" -le $((max + S_OVERSHOOT)) ] || fail "node $id more than $S_OVERSHOOT bytes over its limit"
    done < <(node_figures)
}

# stress ARGS...: kv-stress in the tests container; its report on stdout.
stress() { compose run --rm -T tests stress --progress 0 "$@" 2>&1; }

# The count of a status in a kv-stress report (0 when absent).
status_count() { grep -E "HTTP $1 " <<<"$2" | awk '{ print $NF }' | head -1 | grep . || echo 0; }

step_noeviction() {
    say "noeviction: writing until 507"
    up 2 noeviction
    check_limits
    local cap report refused ok
    cap=$((LIMIT_BYTES * 90 / 100 / 300)) # keys of ~300 bytes that would fit
    report=$(stress --mix set=100 --seed 41 --value-size "$VALUE_SIZE" --requests $((cap * 115 / 100)) \
        --concurrency 32)
    refused=$(status_count 507 "$report")
    ok=$(grep -E '^ *succeeded' <<<"$report" | awk '{ print $2 }')
    out "noeviction: $ok sets stored, $refused refused 507 ($(grep -E '^ *throughput' <<<"$report" | awk '{ print $2 }') req/s)"
    [ "$refused" -gt 0 ] || fail "no write was refused: $report"
    check_survived
    [ "$(curl -s -o /dev/null -w '%{http_code}' "$URL/get?k=k41-0")" = 200 ] || fail "a stored key does not read"
    [ "$(curl -s -o /dev/null -w '%{http_code}' "$URL/rm?k=k41-1")" = 200 ] || fail "/rm at the limit"
    local big
    big=$(printf 'x%.0s' $(seq 1 "$VALUE_SIZE"))
    local code
    code=$(curl -s -o /dev/null -w '%{http_code}' "$URL/set?k=one-more-of-many&v=$big")
    out "noeviction: at the limit a new /set answers $code, /get and /rm 200"
    [ "$code" = 507 ] || [ "$code" = 200 ] || fail "a /set at the limit answered $code"
}

say "project $PROJECT, node containers limited to $LIMIT"
step_noeviction
out "passed in $((SECONDS - START)) s"
