#!/usr/bin/env bash
# fault-test.sh: container faults under a steady write load, through haproxy.
#
# With the compose project running (three nodes or more), a writer sends
# /set through haproxy without pause and records every acknowledged (200)
# write. Meanwhile: one node is killed (docker kill), another is cut off the
# network for longer than the coordinator's failure timeout and reconnected
# (at a new address, see KV_FAULT_NEW_ADDRESS), and a node is added
# (`compose run -d node`). Then every acknowledged write is read back, and
# whether the cut node rejoined is reported.
#
# Prints the figures: writes sent, acknowledged, refused (by status), and of
# the acknowledged: present, lost (404), unreadable (503/504/...), wrong.
# With a replication factor of 2 or more (read from /settings), any lost,
# unreadable or wrong write fails the test, and so does the API contract run
# afterwards. With 1, a killed node takes its keys with it by design: the
# figures are printed, the assertion is reported as skipped, exit 0.
#
# Run from the repository root. Environment:
#   KV_URL [http://127.0.0.1:8080]      haproxy, as seen from this host
#   KV_COMPOSE [docker compose, else docker-compose]
#   COMPOSE_PROJECT_NAME [the directory's name]
#   KV_NODE_TIMEOUT_MS [1000]           the coordinator's failure timeout
#   KV_FAULT_OUTAGE_MS [3 x timeout]    how long a node stays disconnected
#   KV_FAULT_MAX_WRITES [200000]        bound on the writer
#   KV_FAULT_READ_S [120]               bound on the read-back, in seconds
#   KV_FAULT_NEW_ADDRESS [1]            1: the cut node returns at a new address
#   KV_FAULT_SKIP_CONTRACT [0]          1: no API contract afterwards
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
TIMEOUT_MS=${KV_NODE_TIMEOUT_MS:-1000}
OUTAGE_MS=${KV_FAULT_OUTAGE_MS:-$((3 * TIMEOUT_MS))}
MAX_WRITES=${KV_FAULT_MAX_WRITES:-200000}
READ_S=${KV_FAULT_READ_S:-120}
BATCH=20
DIR=$(mktemp -d /tmp/kv-fault.XXXXXX)
START=$SECONDS
WRITER=""
PLACEHOLDERS=()

say() { printf '[fault %3ds] %s\n' "$((SECONDS - START))" "$*"; }
sleep_ms() { sleep "$(awk -v ms="$1" 'BEGIN { printf "%.3f", ms / 1000 }')"; }

# shellcheck disable=SC2317 # invoked by trap
cleanup() {
    [ -n "$WRITER" ] && kill "$WRITER" 2>/dev/null
    [ "${#PLACEHOLDERS[@]}" -gt 0 ] && docker rm -f "${PLACEHOLDERS[@]}" >/dev/null 2>&1
    rm -rf "$DIR"
}
trap cleanup EXIT

nodes() {
    docker ps -q --filter "label=com.docker.compose.project=$PROJECT" \
        --filter "label=com.docker.compose.service=node" --filter status=running
}
name_of() { docker inspect -f '{{.Name}}' "$1" | sed 's:^/::'; }

# The writer: batches of BATCH requests per curl (one keep-alive connection),
# "status url" per request in writes.log, until $DIR/stop appears.
writer() {
    local i=0 j args
    while [ ! -e "$DIR/stop" ] && [ "$i" -lt "$MAX_WRITES" ]; do
        args=()
        for ((j = 0; j < BATCH; j++)); do
            i=$((i + 1))
            args+=(-o /dev/null "$URL/set?k=fault-$i&v=value-$i")
        done
        curl -s --max-time 5 -w '%{http_code} %{url_effective}\n' "${args[@]}" >>"$DIR/writes.log"
    done
}

# The victims must own partitions: containers whose host name (the node id)
# is a node of the routing table with primaries, service containers first.
OWNERS=$(curl -fsS --max-time 5 "$URL/status" | jq -r '.nodes[] | select(.primaries > 0) | .id')
NODES=()
for c in $(nodes | tac); do
    grep -qx "$(docker inspect -f '{{.Config.Hostname}}' "$c")" <<<"$OWNERS" && NODES+=("$c")
done
if [ "${#NODES[@]}" -lt 3 ]; then
    say "needs 3 running nodes that own partitions in project $PROJECT, found ${#NODES[@]}"
    exit 2
fi
NET=$(docker inspect -f '{{range $k, $v := .NetworkSettings.Networks}}{{$k}}{{"\n"}}{{end}}' "${NODES[0]}" | grep -m1 .)
R=$(curl -fsS --max-time 5 "$URL/settings" | jq -r '.replicationFactor // 1') || R=1
KILLED=${NODES[0]} CUT=${NODES[1]}
say "project $PROJECT, network $NET, ${#NODES[@]} nodes, replication factor $R"

: >"$DIR/writes.log"
writer &
WRITER=$!
sleep 2

say "docker kill $(name_of "$KILLED")"
docker kill "$KILLED" >/dev/null
sleep_ms $((3 * TIMEOUT_MS))

# The cut node comes back at a new address when KV_FAULT_NEW_ADDRESS=1 (the
# default): a placeholder container takes the address it leaves, as happens
# to a host that reboots or a pod that is rescheduled. Its peers' TCP
# connections to the old address are then dead without a reset, and only a
# liveness check on the connection (ZeroMQ heartbeats, TCP keepalive) makes
# them reconnect.
ip_of() { docker inspect -f "{{(index .NetworkSettings.Networks \"$NET\").IPAddress}}" "$1"; }
CUT_ID=$(docker inspect -f '{{.Config.Hostname}}' "$CUT")
OLD_IP=$(ip_of "$CUT")
say "docker network disconnect $NET $(name_of "$CUT") (node $CUT_ID, $OLD_IP) for ${OUTAGE_MS} ms"
docker network disconnect "$NET" "$CUT"
# Docker gives a new container the lowest free address, which may be another
# freed one first (the killed node's): placeholders are started until one
# holds the cut node's address, at most 4.
PLACEHOLDERS=()
if [ "${KV_FAULT_NEW_ADDRESS:-1}" = 1 ]; then
    for ((i = 0; i < 4; i++)); do
        p=$(docker run -d --rm --network "$NET" --entrypoint sleep \
            "$(docker inspect -f '{{.Config.Image}}' "$CUT")" 120 2>"$DIR/placeholder.err") || {
            say "no placeholder: $(tail -n 1 "$DIR/placeholder.err")"
            break
        }
        PLACEHOLDERS+=("$p")
        [ "$(ip_of "$p")" = "$OLD_IP" ] && break
    done
    say "${#PLACEHOLDERS[@]} placeholder container(s), the last at $([ "${#PLACEHOLDERS[@]}" -gt 0 ] && ip_of "${PLACEHOLDERS[-1]}")"
fi
sleep_ms "$OUTAGE_MS"
docker network connect --alias node "$NET" "$CUT"
NEW_IP=$(ip_of "$CUT")
[ "${#PLACEHOLDERS[@]}" -gt 0 ] && docker rm -f "${PLACEHOLDERS[@]}" >/dev/null 2>&1
PLACEHOLDERS=()
say "reconnected $(name_of "$CUT") at $NEW_IP ($([ "$NEW_IP" = "$OLD_IP" ] && echo "same address" || echo "new address"))"

say "adding a node: ${COMPOSE[*]} run -d node"
ADDED=$("${COMPOSE[@]}" run -d node 2>"$DIR/run.err" | tail -n 1)
if [ -z "$ADDED" ]; then
    say "could not add a node: $(tail -n 3 "$DIR/run.err")"
else
    say "added $ADDED"
fi
sleep 5

touch "$DIR/stop"
wait "$WRITER"
WRITER=""
say "writer stopped"

# Did the cut node rejoin (active and reachable in the gateway's table)?
rejoined=no
for ((i = 0; i < 20; i++)); do
    if curl -fsS --max-time 2 "$URL/status" |
        jq -e --arg id "$CUT_ID" 'any(.nodes[]; .id == $id and .state == "active" and .reachable != false)' >/dev/null 2>&1; then
        rejoined=yes
        break
    fi
    sleep 0.5
done
say "cut node $CUT_ID rejoined: $rejoined"

# --- figures -------------------------------------------------------------------
sent=$(wc -l <"$DIR/writes.log")
awk '$1 == 200 { sub(/.*[?&]k=/, "", $2); sub(/&.*/, "", $2); print $2 }' "$DIR/writes.log" >"$DIR/acked"
acked=$(wc -l <"$DIR/acked")
refused=$(awk '$1 != 200 { n[$1]++ } END { for (s in n) { printf "%s%s x%d", sep, s, n[s]; sep = ", " } }' "$DIR/writes.log")
say "writes: $sent sent, $acked acknowledged, refused: ${refused:-none}"

# Read back every acknowledged key: 8 readers in parallel, 50 keys per curl,
# "body<TAB>status<TAB>url" per key. A key on a partition with no owner costs
# the gateway's whole timeout before its 503, hence the parallelism and the
# bounds: 5 s a request, READ_S for the read-back; keys not read by then
# count as unreadable.
mkdir -p "$DIR/chunks"
split -l 50 "$DIR/acked" "$DIR/chunks/"
export URL
# shellcheck disable=SC2016 # $URL and $1 expand in the inner shell
find "$DIR/chunks" -type f -print0 |
    timeout "$READ_S" xargs -0 -r -P 8 -I{} sh -c \
        'sed "s|.*|url = \"$URL/get?k=&\"|" "$1" |
         curl -s --max-time 5 -K - -w "\t%{http_code}\t%{url_effective}\n" >"$1.out"' sh {}
find "$DIR/chunks" -name '*.out' -exec cat {} + >"$DIR/reads.log"
# A reader cut off by the time bound may leave a partial line: only whole
# "body<TAB>status<TAB>url" lines count as read.
awk -F'\t' 'NF == 3 && $2 ~ /^[0-9][0-9][0-9]$/' "$DIR/reads.log" >"$DIR/reads.ok"
unread=$((acked - $(wc -l <"$DIR/reads.ok")))
[ "$unread" -gt 0 ] && say "read-back stopped after ${READ_S}s with $unread keys unread"
read -r present lost unreadable wrong < <(awk -F'\t' '
    { key = $3; sub(/.*[?&]k=/, "", key); n = key; sub(/^fault-/, "", n) }
    $2 == 200 && $1 == "\"value-" n "\"" { ok++; next }
    $2 == 200 { bad++; next }
    $2 == 404 { lost++; next }
    { other++ }
    END { printf "%d %d %d %d\n", ok, lost, other + unread, bad }' unread="$unread" "$DIR/reads.ok")
say "acknowledged writes read back: $present present, $lost lost (404), $unreadable unreadable, $wrong wrong value"
echo "fault-test: acked=$acked present=$present lost=$lost unreadable=$unreadable wrong=$wrong replication=$R cut-node-rejoined=$rejoined"

health=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$URL/healthcheck")
say "/healthcheck after the faults: $health"

contract_rc=0
if [ "$R" -lt 2 ] && [ "$health" != 200 ]; then
    say "API contract after the faults: not run (replication factor $R: the killed node's partitions have no owner)"
elif [ "${KV_FAULT_SKIP_CONTRACT:-0}" != 1 ]; then
    say "API contract after the faults"
    "${COMPOSE[@]}" run --rm tests contract >"$DIR/contract.log" 2>&1
    contract_rc=$?
    grep -E '^[0-9]+ passed' "$DIR/contract.log" || tail -n 3 "$DIR/contract.log"
    [ "$contract_rc" -ne 0 ] && grep '^FAIL' "$DIR/contract.log" | head -n 10
fi

if [ "$R" -lt 2 ]; then
    say "SKIPPED by configuration: replication factor $R, so the killed node's keys are gone by design;"
    say "no-loss assertion and the contract result apply from KV_REPLICATION=2 on"
    exit 0
fi
failed=0
[ $((lost + unreadable + wrong)) -eq 0 ] || {
    say "FAILED: acknowledged writes missing"
    failed=1
}
[ "$contract_rc" -eq 0 ] || {
    say "FAILED: API contract after the faults"
    failed=1
}
[ "$failed" -eq 0 ] && say "passed: every acknowledged write survived"
exit "$failed"
