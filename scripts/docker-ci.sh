#!/usr/bin/env bash
# docker-ci.sh: the store in containers, end to end, as CI runs it.
#
#   1. base      debian:bookworm-slim, bootstrapped locally if it cannot be pulled
#   2. config    the compose file is valid
#   3. build     `compose build` and the tests image
#   4. up        `compose up -d`, then haproxy's /healthcheck answers 200
#   5. contract  `compose run tests`: the API contract, through haproxy
#   6. errors    a paused node: 504 TIMEOUT, then 503 UNAVAILABLE for its keys
#                while the other keys keep answering; back to healthy after
#   7. attach    `compose run -d node` joins a node with a unique id
#   8. stress    `compose run tests stress` (a short run), when kv-stress is built
#   9. fault     compose/fault-test.sh, only with KV_FAULT_TEST=1
# and always, on exit: `compose down -v --remove-orphans`, with the
# containers' logs first when a step failed.
#
# It uses its own project name and host ports, so a cluster started by hand
# (`docker compose up`, `make run` on 8080) is left alone. Environment:
#   KV_COMPOSE            compose command [docker compose, else docker-compose]
#   COMPOSE_PROJECT_NAME  [kvstore-ci]
#   KV_CI_HTTP_PORT       haproxy's host port [28080]; KV_CI_STATS_PORT [28404]
#   KV_TIMEOUT_MS         gateway timeout [500: under the 1 s failure timeout,
#                         so a frozen node costs 504 before it is declared down]
#   KV_REPLICATION        replication factor [1] (see docker-compose.yml)
#   KV_FAULT_TEST         1: run the fault test [0]
#   KV_CI_STRESS_ARGS     arguments of the short stress run [--requests 20000 --concurrency 20]
#   KV_CI_KEEP            1: leave the cluster running at the end [0]
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

export COMPOSE_PROJECT_NAME=${COMPOSE_PROJECT_NAME:-kvstore-ci}
export KV_HTTP_PORT=${KV_CI_HTTP_PORT:-28080}
export KV_STATS_PORT=${KV_CI_STATS_PORT:-28404}
export KV_TIMEOUT_MS=${KV_TIMEOUT_MS:-500}
export KV_REPLICATION=${KV_REPLICATION:-1}
URL=http://127.0.0.1:$KV_HTTP_PORT
PROJECT=$COMPOSE_PROJECT_NAME

if [ -n "${KV_COMPOSE:-}" ]; then
    read -r -a COMPOSE <<<"$KV_COMPOSE"
elif docker compose version >/dev/null 2>&1; then
    COMPOSE=(docker compose)
else
    COMPOSE=(docker-compose)
fi
export KV_COMPOSE="${COMPOSE[*]}"

say() { printf '[docker-ci] %s\n' "$*"; }
compose() { "${COMPOSE[@]}" "$@"; }

STEP_NAMES=() STEP_TIMES=()
CURRENT=""
RUN_START=$SECONDS

# step NAME FUNCTION: runs one step, timed.
step() {
    local name=$1 start=$SECONDS
    CURRENT=$name
    echo
    say "=== $name ==="
    "$2"
    STEP_NAMES+=("$name")
    STEP_TIMES+=($((SECONDS - start)))
    CURRENT=""
}

# Containers of this project, one-off `run` containers included.
project_containers() {
    docker ps -aq --filter "label=com.docker.compose.project=$PROJECT"
}

teardown() {
    local rc=$?
    set +e
    if [ "$rc" -ne 0 ] && [ -n "$(project_containers)" ]; then
        echo
        say "step '${CURRENT:-?}' failed: state and logs of the cluster"
        compose ps
        compose logs --no-color --tail 40
    fi
    if [ "${KV_CI_KEEP:-0}" = 1 ]; then
        say "KV_CI_KEEP=1: cluster left running at $URL (project $PROJECT)"
    else
        compose down -v --remove-orphans --timeout 5 >/dev/null 2>&1
        # One-off containers (`run -d node`) that down does not know of.
        project_containers | xargs -r docker rm -f >/dev/null 2>&1
        docker network rm "${PROJECT}_default" >/dev/null 2>&1
    fi
    echo
    say "summary:"
    local i
    for i in "${!STEP_NAMES[@]}"; do
        printf '  %-10s ok      %4ss\n' "${STEP_NAMES[$i]}" "${STEP_TIMES[$i]}"
    done
    [ -n "$CURRENT" ] && printf '  %-10s FAILED\n' "$CURRENT"
    printf '  %-10s %-7s %4ss\n' total "$([ "$rc" -eq 0 ] && echo ok || echo FAILED)" \
        "$((SECONDS - RUN_START))"
    exit "$rc"
}
trap teardown EXIT

# wait_for PATH STATUS SECONDS: polls $URL$PATH until it answers STATUS.
wait_for() {
    local deadline=$((SECONDS + $3)) code
    while :; do
        code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$URL$1" 2>/dev/null) || true
        [ "$code" = "$2" ] && return 0
        if [ "$SECONDS" -ge "$deadline" ]; then
            say "$URL$1 answered ${code:-nothing}, not $2, for $3 s"
            return 1
        fi
        sleep 0.5
    done
}

node_containers() {
    docker ps -q --filter "label=com.docker.compose.project=$PROJECT" \
        --filter "label=com.docker.compose.service=node" --filter status=running
}

# --- steps -----------------------------------------------------------------------

step_prerequisites() {
    docker info >/dev/null || {
        say "the Docker engine does not answer"
        return 1
    }
    local missing=() tool
    for tool in curl jq; do command -v "$tool" >/dev/null || missing+=("$tool"); done
    if [ "${#missing[@]}" -gt 0 ]; then
        say "installing ${missing[*]}"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
    fi
    say "engine $(docker version -f '{{.Server.Version}}'), compose: ${COMPOSE[*]} ($(compose version --short 2>/dev/null || compose version | head -n 1))"
    # A stale run of this project (an interrupted CI) would hold the ports.
    compose down -v --remove-orphans --timeout 5 >/dev/null 2>&1 || true
    project_containers | xargs -r docker rm -f >/dev/null 2>&1 || true
}

step_base() {
    compose/make-base-image.sh
}

step_config() {
    compose config -q
    compose --profile tests config --services | sort | tr '\n' ' '
    echo
}

step_build() {
    compose build
    compose build tests
    docker images --format '{{.Repository}}:{{.Tag}}  {{.Size}}' |
        grep -E '^(kvstore|kvstore-haproxy|kvstore-tests|debian):' | sed 's/^/  /'
}

step_up() {
    compose up -d
    wait_for /healthcheck 200 90
    compose ps
}

step_contract() {
    compose run --rm -T tests contract
}

# A paused (frozen) node: its keys time out (504) while it is still in the
# table, then answer 503 once the coordinator has declared it down; keys on
# the other nodes answer 200 throughout (haproxy falls back to gateways that
# report the cluster unhealthy). Unpaused, it is back and nothing was lost.
step_errors() {
    local keys=60 i node
    for ((i = 0; i < keys; i++)); do
        [ "$(curl -s -o /dev/null -w '%{http_code}' "$URL/set?k=err-$i&v=$i")" = 200 ] || {
            say "set err-$i failed"
            return 1
        }
    done
    node=$(node_containers | head -n 1)
    say "docker pause $(docker inspect -f '{{.Name}}' "$node")"
    docker pause "$node" >/dev/null
    # In parallel, so most requests start before the failure timeout: those
    # get 504 TIMEOUT, any that start after it 503 UNAVAILABLE.
    local frozen down tmp
    tmp=$(mktemp -d)
    for ((i = 0; i < keys; i++)); do
        curl -s --max-time 5 -o "$tmp/$i" -w " $i %{http_code}\n" "$URL/get?k=err-$i" >"$tmp/$i.code" &
    done
    wait
    frozen=$(for ((i = 0; i < keys; i++)); do cat "$tmp/$i" "$tmp/$i.code"; done)
    rm -rf "$tmp"
    sleep 2.5 # past the coordinator's failure timeout and haproxy's checks
    down=$(for ((i = 0; i < keys; i++)); do curl -s -w " $i %{http_code}\n" "$URL/get?k=err-$i"; done)
    local timeouts late ok1 unavailable ok2 health lost_keys
    timeouts=$(grep -c '"TIMEOUT".* 504$' <<<"$frozen" || true)
    late=$(grep -c '"UNAVAILABLE".* 503$' <<<"$frozen" || true)
    ok1=$(grep -c ' 200$' <<<"$frozen" || true)
    unavailable=$(grep -c '"UNAVAILABLE".* 503$' <<<"$down" || true)
    ok2=$(grep -c ' 200$' <<<"$down" || true)
    health=$(curl -s -w ' %{http_code}' "$URL/healthcheck")
    say "frozen: $timeouts x 504 TIMEOUT, $late x 503 (started late), $ok1 x 200"
    say "declared down: $unavailable x 503 UNAVAILABLE, $ok2 x 200; /healthcheck: $health"
    # The keys that failed must be the same set in both phases: the frozen node's.
    lost_keys=$(diff <(awk '$NF != 200 { print $(NF - 1) }' <<<"$frozen" | sort) \
        <(awk '$NF != 200 { print $(NF - 1) }' <<<"$down" | sort) | grep -c '^[<>]' || true)
    docker unpause "$node" >/dev/null
    wait_for /healthcheck 200 30
    local back=0
    for ((i = 0; i < keys; i++)); do
        [ "$(curl -s "$URL/get?k=err-$i")" = "\"$i\"" ] && back=$((back + 1))
    done
    say "after unpause: $back of $keys keys read back"
    curl -s -o /dev/null "$URL/clear"
    local ok=1
    [ "$timeouts" -gt 0 ] || { say "no 504 TIMEOUT while frozen"; ok=0; }
    [ $((timeouts + late + ok1)) -eq "$keys" ] || { say "unexpected answers while frozen"; ok=0; }
    [ $((unavailable + ok2)) -eq "$keys" ] && [ "$ok2" -gt 0 ] || { say "unexpected answers once down"; ok=0; }
    [ "$lost_keys" -eq 0 ] || { say "the failing keys differ between the two phases"; ok=0; }
    [[ $health == *'"unavailable"'*' 503' ]] || { say "/healthcheck did not report 503"; ok=0; }
    [ "$back" -eq "$keys" ] || { say "keys missing after unpause"; ok=0; }
    [ "$ok" -eq 1 ]
}

# `compose run -d node`: a node with its own id (the container's host name)
# registers with the coordinator. Until live membership lands, a node that
# arrives after the partitions were assigned is registered but owns nothing
# and is not in the published table, so the coordinator's log is the proof;
# once it is in /status, that is checked instead.
step_attach() {
    local name id deadline where=""
    name=$(compose run -d node | tail -n 1)
    id=$(docker inspect -f '{{.Config.Hostname}}' "$name")
    say "started $name, node id $id"
    deadline=$((SECONDS + 20))
    while [ -z "$where" ]; do
        if curl -s "$URL/status" | jq -e --arg id "$id" 'any(.nodes[]; .id == $id)' >/dev/null; then
            where="/status ($(curl -s "$URL/status" | jq '.nodes | length') nodes)"
        elif compose logs --no-color coordinator 2>/dev/null | grep -q "node $id registered"; then
            where="the coordinator's log (registered; not in /status until live membership)"
        elif [ "$SECONDS" -ge "$deadline" ]; then
            say "node $id neither in /status nor registered after 20 s"
            return 1
        else
            sleep 0.5
        fi
    done
    say "node $id found in $where"
    wait_for /healthcheck 200 30
}

step_stress() {
    if ! compose run --rm -T --entrypoint sh tests -c 'command -v kv-stress' >/dev/null 2>&1; then
        compose run --rm -T tests stress || true
        say "kv-stress is not in the tests image: stress step skipped"
        return 0
    fi
    local args
    read -r -a args <<<"${KV_CI_STRESS_ARGS:---requests 20000 --concurrency 20}"
    compose run --rm -T tests stress "${args[@]}"
}

step_fault() {
    KV_URL=$URL compose/fault-test.sh
}

# --- pipeline --------------------------------------------------------------------

step prereq step_prerequisites
step base step_base
step config step_config
step build step_build
step up step_up
step contract step_contract
step errors step_errors
step attach step_attach
step stress step_stress
if [ "${KV_FAULT_TEST:-0}" = 1 ]; then
    step fault step_fault
else
    say "fault test not run (KV_FAULT_TEST=1 runs it)"
fi
