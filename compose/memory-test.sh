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
#   2. allkeys-lru (2 nodes, R=2): about a full node's worth of keys
#      written (the hot tenth last, by the reader), then twice that of new
#      keys while a client keeps reading the hot tenth; halfway through a
#      third node joins (same limit and policy), so partitions move in while
#      eviction runs. Every write must answer 200 (a move fails no request:
#      README), at least 90 % of the hot keys must still read afterwards
#      (random eviction keeps about a third), every node must have evicted
#      and be within its limit, none OOM-killed or restarted, and the third
#      node must be active and hold partitions.
#
# Prints the figures on lines starting "memory:". Run from the repository
# root with the images built (scripts/docker-ci.sh runs it as its "memory"
# step with KV_MEMORY_TEST=1). Environment:
#   KV_URL [http://127.0.0.1:8080]   haproxy, as seen from this host
#   KV_COMPOSE [docker compose, else docker-compose]
#   COMPOSE_PROJECT_NAME [the directory's name]
#   KV_MEMTEST_LIMIT [256m]          the node containers' memory limit
#   KV_MEMTEST_STEPS [noeviction] the steps to run, in that order; lru is
#                    opt-in until it passes (docs/eviction.md "In containers")
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
STEPS=${KV_MEMTEST_STEPS:-noeviction}
READER=$PROJECT-lru-reader WRITER=$PROJECT-lru-writer # step_lru's kv-stress containers
START=$SECONDS

say() { printf '[memory %3ds] %s\n' "$((SECONDS - START))" "$*"; }
out() { printf 'memory: %s\n' "$*"; }
fail() {
    say "FAILED: $*"
    exit 1
}
compose() { "${COMPOSE[@]}" "$@"; }

# shellcheck disable=SC2317 # invoked by trap
cleanup() {
    docker rm -f "$READER" "$WRITER" >/dev/null 2>&1
    compose down -v --remove-orphans --timeout 5 >/dev/null 2>&1
}
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
    local c state usage peak id max used keys evicted
    for c in $(node_containers); do
        state=$(docker inspect -f '{{.State.Status}} oom={{.State.OOMKilled}} restarts={{.RestartCount}}' "$c")
        usage=$(docker exec "$c" sh -c 'cat /sys/fs/cgroup/memory.current 2>/dev/null ||
            cat /sys/fs/cgroup/memory/memory.usage_in_bytes' 2>/dev/null || echo 0)
        peak=$(docker exec "$c" sh -c 'cat /sys/fs/cgroup/memory.peak 2>/dev/null ||
            cat /sys/fs/cgroup/memory/memory.max_usage_in_bytes' 2>/dev/null || echo '?')
        out "container $(docker inspect -f '{{.Name}}' "$c"): $state, cgroup usage $usage (peak $peak) of $LIMIT_BYTES"
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

# detached NAME ARGS...: kv-stress in a tests container of that name, left
# running (its report: `docker logs NAME 2>/dev/null` once it ended).
detached() {
    local name=$1
    shift
    docker rm -f "$name" >/dev/null 2>&1
    compose run -d --name "$name" tests stress "$@" >/dev/null 2>&1 || fail "compose run $name"
}

# The hot keys k<seed>-0 .. k<seed>-(N-1) that still read (a value, not
# null), by /mget batches of 500 (their target fits the 8 KiB limit).
hot_left() {
    local seed=$1 n=$2 from to left=0 batch query
    for ((from = 0; from < n; from += 500)); do
        to=$((from + 500 < n ? from + 500 : n))
        query=$(seq -f "k=k$seed-%.0f" "$from" $((to - 1)) | paste -sd '&')
        batch=$(curl -fsS --max-time 10 "$URL/mget?$query" | jq '[.[] | select(.v != null)] | length') ||
            fail "/mget of hot keys $from-$to failed"
        left=$((left + batch))
    done
    echo "$left"
}

step_lru() {
    say "allkeys-lru: twice a full node written while the hot tenth is read"
    up 2 allkeys-lru
    check_limits
    # About what a full node holds (noeviction stored 760k at 256m, ~318
    # bytes a key): the cold nine tenths first, then the reader writes the
    # hot tenth (its preload) and keeps reading it; the writer then writes
    # twice the whole of new keys.
    local preload hot cold writes
    preload=$((LIMIT_BYTES * 90 / 100 / 320))
    hot=$((preload / 10))
    cold=$((preload - hot))
    writes=$((2 * preload))
    local report
    report=$(stress --mix set=100 --seed 61 --value-size "$VALUE_SIZE" --requests "$cold" --concurrency 32)
    grep -qE '^ *errors +0$' <<<"$report" || fail "cold preload: $report"
    out "lru: $cold cold keys written (k61-*) in $(grep -E '^ *time' <<<"$report" | awk '{ print $2 }') s"

    # Its report (stdout) comes at its end; its progress lines (stderr, one
    # a second) tell when the preload is over: "left" counts the reads then.
    local reader_start=$SECONDS
    detached "$READER" --progress 1 --seed 62 --value-size "$VALUE_SIZE" --preload "$hot" \
        --mix get=100 --requests 1000000000 --concurrency 8
    local deadline=$((SECONDS + 300)) line
    until line=$(docker logs --tail 1 "$READER" 2>&1 | grep '^\[kv-stress\] left') &&
        [ "$(awk '{ print $3 }' <<<"$line")" -gt "$hot" ]; do
        [ "$(docker inspect -f '{{.State.Running}}' "$READER" 2>/dev/null)" = true ] ||
            fail "reader ended: $(docker logs "$READER" 2>&1 | tail -20)"
        [ "$SECONDS" -ge "$deadline" ] && fail "reader's preload not done after 300 s"
        sleep 1
    done
    [[ $line == *" errors 0 "* ]] || fail "hot keys not all written: $line"
    out "lru: $hot hot keys written (k62-*) by the reader in about $((SECONDS - reader_start)) s, now read"
    node_figures | while read -r id max used keys evicted; do
        out "lru: preloaded, node $id: used $used of $max bytes, $keys keys, $evicted evicted"
    done

    say "writing $writes new keys; a third node joins halfway"
    local write_start=$SECONDS left=$writes joined=""
    detached "$WRITER" --progress 1 --seed 63 --mix set=100 --value-size "$VALUE_SIZE" \
        --requests "$writes" --concurrency 32
    while [ "$(docker inspect -f '{{.State.Running}}' "$WRITER" 2>/dev/null)" = true ]; do
        if [ -z "$joined" ]; then
            left=$(docker logs --tail 1 "$WRITER" 2>&1 | sed -n 's/^\[kv-stress\] left \([0-9]*\) .*/\1/p')
            if [ -n "$left" ] && [ "$left" -le $((writes / 2)) ]; then
                KV_NODE_MEMORY=$LIMIT KV_EVICTION=allkeys-lru KV_MIN_NODES=2 \
                    compose up -d --no-recreate --scale node=3 >/dev/null 2>&1 || fail "third node: compose up"
                joined=$((SECONDS - write_start))
                say "third node started after $joined s of writing ($left writes left)"
            fi
        fi
        sleep 1
    done
    local write_time=$((SECONDS - write_start))
    report=$(docker logs "$WRITER" 2>/dev/null)
    local written errors problems=()
    written=$(grep -E '^ *succeeded' <<<"$report" | awk '{ print $2 }')
    errors=$(grep -E '^ *errors +[0-9]' <<<"$report" | awk '{ print $2 }')
    out "lru: $written of $writes new keys written (k63-*) in $write_time s, $errors failed$(
        grep -E '^ *(HTTP|timeout|io|closed|parse|body)' <<<"$report" | tr -s ' ' | tr '\n' ';')"
    [ -n "$joined" ] || fail "the writer ended before the third node joined: $report"
    # From here on every figure is taken before a failure is reported.
    [ "${errors:-1}" = 0 ] && [ "$written" = "$writes" ] || problems+=("$errors writes failed under allkeys-lru")

    docker stop -t 10 "$READER" >/dev/null 2>&1
    report=$(docker logs "$READER" 2>/dev/null)
    out "lru: reader: $(grep -E '^ *succeeded' <<<"$report" | awk '{ print $2 }') hot reads 200, $(
        grep -E '^ *errors +[0-9]' <<<"$report" | awk '{ print $2 }') not (a 404 is an evicted hot key)$(
            grep -E '^ *(HTTP|timeout|io|closed|parse|body)' <<<"$report" | tr -s ' ' | tr '\n' ';')"

    # The moves the third node brought: done, and it holds partitions.
    local status moving=1
    deadline=$((SECONDS + 120))
    while :; do
        status=$(curl -fsS --max-time 5 "$URL/status") || status='{}'
        moving=$(jq -r '.movingPartitions // 1' <<<"$status")
        [ "$moving" = 0 ] && [ "$(jq '[.nodes[] | select(.state == "active")] | length' <<<"$status")" = 3 ] && break
        if [ "$SECONDS" -ge "$deadline" ]; then
            problems+=("moves not done 120 s after the writes: $(jq -c '[.nodes[] | {id, state}]' <<<"$status")")
            break
        fi
        sleep 1
    done
    jq -r '.nodes[] | "lru: node \(.id) \(.state): \(.primaries) primaries, \(.replicas) replicas"' <<<"$status" |
        while read -r line; do out "$line"; done
    jq -e '[.nodes[] | select(.primaries + .replicas == 0)] | length == 0' <<<"$status" >/dev/null ||
        problems+=("a node holds no partition")

    local kept
    kept=$(hot_left 62 "$hot")
    out "lru: $kept of $hot hot keys left ($((kept * 1000 / hot / 10)).$((kept * 1000 / hot % 10)) %)"
    [ $((kept * 10)) -ge $((hot * 9)) ] || problems+=("fewer than 90 % of the hot keys survived")
    while read -r id _ _ _ evicted; do
        [ "$evicted" -gt 0 ] || problems+=("node $id evicted nothing")
    done < <(node_figures)
    [ "${#problems[@]}" -eq 0 ] || say "problems: $(printf '%s; ' "${problems[@]}")"
    check_survived
    [ "${#problems[@]}" -eq 0 ] || fail "$(printf '%s; ' "${problems[@]}")"
}

say "project $PROJECT, node containers limited to $LIMIT"
for step in $STEPS; do
    case $step in
    noeviction) step_noeviction ;;
    lru) step_lru ;;
    *) fail "unknown step '$step' (KV_MEMTEST_STEPS: noeviction, lru)" ;;
    esac
done
out "passed in $((SECONDS - START)) s"
