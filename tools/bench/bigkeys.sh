#!/usr/bin/env bash
# bigkeys.sh: what a cluster holding millions of keys still has to do well.
#
# Runs against a cluster that is already up and loaded (tools/bench/mem.sh
# starts one, loads 10,000,000 keys and calls this; any other loaded cluster
# works too). One subcommand per check, each printing one summary block:
#
#   latency KEYS SEED LABEL
#       /get latency: wrk like tools/bench/bench.sh (get.lua, -t1 -c50,
#       --timeout 2s, pinned to CLIENT_CPU, the servers in SERVER_PIDS pinned
#       to SERVER_CPU for the runs and unpinned after), REPS runs of DURATION
#       seconds on random keys k<SEED>-0 .. k<SEED>-<KEYS-1>, medians.
#       Prints "LATENCY label rps p50_us p99_us errors" as its last line.
#   getkeys
#       streams /getKeys whole with curl to a counter (no copy of the body is
#       kept), samples the gateway's VmRSS every 0.1 s meanwhile, and checks
#       the count against /status availableRecords and that the array closed.
#   join
#       starts a fourth node (NODE_BIN), keeps a kv-stress client (gets and
#       sets on its own keys, every answer checked) running through the
#       hand-off, and polls /status until nothing moves, the new node serves
#       and primaries are balanced; then until every node holds the same
#       number of slots (primaries + replicas) within one. Prints both times,
#       the client's requests and errors; the node is left running (the
#       caller's cluster now has four nodes) unless STOP_NODE=1.
#
# Everything this script starts (wrk, curl, kv-stress, the fourth node when
# STOP_NODE=1) is stopped on exit, Ctrl-C included; nothing else is touched.
#
# Settings (environment, defaults in brackets):
#   KV_BIG_URL [http://127.0.0.1:8080]          the gateway
#   KV_BIG_COORDINATOR [tcp://127.0.0.1:5550]   coordinator ROUTER, for the new node
#   KV_BIG_GATEWAY_PID                          gateway pid (getkeys: RSS); required there
#   KV_BIG_SERVER_PIDS                          pids pinned during latency runs (optional)
#   KV_BIG_SERVER_CPU [0], KV_BIG_CLIENT_CPU [1]
#   KV_BIG_DURATION [5], KV_BIG_REPS [3]        wrk seconds per run, runs
#   KV_BIG_BUILD_DIR [build/release]            kv-node and kv-stress
#   KV_BIG_NODE_ID [node-4], KV_BIG_NODE_PORT [5607] (it publishes on the next port)
#   KV_BIG_NODE_PID_FILE                        where join writes the new node's pid
#   KV_BIG_MOVE_TIMEOUT [300]                   seconds to wait for the hand-off
#   KV_BIG_STOP_NODE [0]                        1: stop the new node at the end
#   KV_BIG_WORK [a new /tmp/kv-big.* folder]    logs and raw output; join counts the
#                                               failovers in coordinator.log there, if any
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT" || exit 2

URL=${KV_BIG_URL:-http://127.0.0.1:8080}
COORD_EP=${KV_BIG_COORDINATOR:-tcp://127.0.0.1:5550}
GATEWAY_PID=${KV_BIG_GATEWAY_PID:-}
SERVER_PIDS=${KV_BIG_SERVER_PIDS:-}
SERVER_CPU=${KV_BIG_SERVER_CPU:-0}
CLIENT_CPU=${KV_BIG_CLIENT_CPU:-1}
DURATION=${KV_BIG_DURATION:-5}
REPS=${KV_BIG_REPS:-3}
BUILD_DIR=${KV_BIG_BUILD_DIR:-build/release}
NODE_ID=${KV_BIG_NODE_ID:-node-4}
NODE_PORT=${KV_BIG_NODE_PORT:-5607}
NODE_PID_FILE=${KV_BIG_NODE_PID_FILE:-}
MOVE_TIMEOUT=${KV_BIG_MOVE_TIMEOUT:-300}
STOP_NODE=${KV_BIG_STOP_NODE:-0}
WORK=${KV_BIG_WORK:-$(mktemp -d /tmp/kv-big.XXXXXX)}
HOST=$(printf '%s\n' "$URL" | sed -E 's#^http://([^:/]+).*#\1#')

say() { printf '[bigkeys] %s\n' "$*" >&2; }
die() {
    say "error: $*"
    exit 1
}

# --- processes ---------------------------------------------------------------

PIDS=()      # everything started here, stopped on exit
KEEP_PIDS=() # started here but left running on a normal exit (the new node)

# shellcheck disable=SC2317 # invoked by trap
cleanup() {
    trap '' INT TERM
    local pid keep alive=() i
    for pid in "${PIDS[@]}"; do
        keep=0
        for i in "${KEEP_PIDS[@]}"; do [ "$i" = "$pid" ] && keep=1; done
        [ "$keep" -eq 0 ] && kill -0 "$pid" 2>/dev/null && alive+=("$pid")
    done
    [ "${#alive[@]}" -gt 0 ] || return 0
    kill -INT "${alive[@]}" 2>/dev/null # a node stopped by SIGINT does not drain
    for ((i = 0; i < 50; i++)); do
        local left=()
        for pid in "${alive[@]}"; do kill -0 "$pid" 2>/dev/null && left+=("$pid"); done
        [ "${#left[@]}" -eq 0 ] && return 0
        sleep 0.1
    done
    kill -KILL "${alive[@]}" 2>/dev/null
}
trap cleanup EXIT
trap 'KEEP_PIDS=(); cleanup; exit 130' INT TERM

binary() {
    local dir
    for dir in "$BUILD_DIR" "$BUILD_DIR/bin" "$BUILD_DIR/$2"; do
        [ -x "$dir/$1" ] && printf '%s\n' "$dir/$1" && return 0
    done
    die "$1 not found under $BUILD_DIR (run make first)"
}

rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null; }

# status_get prints /status; top_field BODY NAME prints a scalar field of its
# top level (names the node objects do not use: availableRecords, healthy,
# movingPartitions).
status_get() { curl -fsS --max-time 5 "$URL/status" 2>/dev/null; }
top_field() { printf '%s\n' "$1" | grep -o "\"$2\": *[a-z0-9]*" | head -1 | sed 's/.*: *//'; }

# node_table STATUS: one "id state primaries replicas keys" line per node.
node_table() {
    printf '%s\n' "$1" | tr '{}' '\n' | awk '
        /"id":/ {
            id = $0; sub(/.*"id": *"/, "", id); sub(/".*/, "", id)
            st = $0; sub(/.*"state": *"/, "", st); sub(/".*/, "", st)
            p = $0; sub(/.*"primaries": */, "", p); sub(/[^0-9].*/, "", p)
            r = $0; sub(/.*"replicas": */, "", r); sub(/[^0-9].*/, "", r)
            k = $0; if (sub(/.*"keys": */, "", k)) sub(/[^0-9].*/, "", k); else k = "?"
            print id, st, p, r, k
        }'
}

# --- latency -----------------------------------------------------------------

pin_servers() {
    local cpus=$1 pid
    for pid in $SERVER_PIDS; do taskset -a -p -c "$cpus" "$pid" >/dev/null 2>&1; done
}

median() { sort -g | awk '{ v[NR] = $1 } END { if (!NR) print 0; else if (NR % 2) print v[(NR + 1) / 2];
    else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

field() { printf '%s\n' "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"; }

cmd_latency() {
    local keys=$1 seed=$2 label=$3 rep line out rows
    rows=$WORK/latency-$label.txt
    command -v wrk >/dev/null || die "wrk is missing (sudo scripts/install-deps.sh)"
    : >"$rows"
    [ -n "$SERVER_PIDS" ] && pin_servers "$SERVER_CPU"
    taskset -c "$CLIENT_CPU" wrk -t1 -c50 -d2s --timeout 2s -s tools/bench/get.lua "$URL" -- \
        kv "$keys" "$seed" >"$WORK/wrk-$label-warmup.txt" 2>&1
    for ((rep = 1; rep <= REPS; rep++)); do
        out=$WORK/wrk-$label-$rep.txt
        taskset -c "$CLIENT_CPU" wrk -t1 -c50 -d"${DURATION}s" --timeout 2s \
            -s tools/bench/get.lua "$URL" -- kv "$keys" "$seed" >"$out" 2>&1
        line=$(grep -m1 '^KVBENCH' "$out")
        [ -n "$line" ] || die "wrk printed no result: $out"
        printf '%s %s %s %s\n' "$(field "$line" rps)" "$(field "$line" p50_us)" \
            "$(field "$line" p99_us)" "$(($(field "$line" non2xx) + $(field "$line" socket_errors)))" \
            >>"$rows"
        say "$(printf '%-6s run %d: %8.0f req/s  p50 %6.3f ms  p99 %6.3f ms  errors %s' "$label" \
            "$rep" "$(field "$line" rps)" "$(awk -v u="$(field "$line" p50_us)" 'BEGIN { print u / 1000 }')" \
            "$(awk -v u="$(field "$line" p99_us)" 'BEGIN { print u / 1000 }')" \
            "$(($(field "$line" non2xx) + $(field "$line" socket_errors)))")"
    done
    [ -n "$SERVER_PIDS" ] && pin_servers "0-$(($(nproc) - 1))"
    printf 'LATENCY %s %s %s %s %s\n' "$label" "$(awk '{ print $1 }' "$rows" | median)" \
        "$(awk '{ print $2 }' "$rows" | median)" "$(awk '{ print $3 }' "$rows" | median)" \
        "$(awk '{ s += $4 } END { print s + 0 }' "$rows")"
}

# --- getKeys -------------------------------------------------------------------

cmd_getkeys() {
    [ -n "$GATEWAY_PID" ] || die "KV_BIG_GATEWAY_PID is required for getkeys"
    local status expected before peak=0 rss start end commas rc tail_bytes
    status=$(status_get) || die "no /status from $URL"
    expected=$(top_field "$status" availableRecords)
    before=$(rss_kb "$GATEWAY_PID")
    [ -n "$before" ] || die "no gateway process $GATEWAY_PID"
    say "streaming /getKeys ($expected keys expected); gateway VmRSS before: $((before / 1024)) MB"
    start=$(date +%s.%N)
    # The counter runs in the background so this shell can sample RSS; curl's
    # own status comes back through a file (a pipe hides it).
    (
        curl -sS --max-time 1800 "$URL/getKeys" 2>"$WORK/getkeys-curl.err"
        echo $? >"$WORK/getkeys-curl.rc"
    ) | tee >(tail -c 8 >"$WORK/getkeys-tail") | tr -cd ',' | wc -c >"$WORK/getkeys-commas" &
    local reader=$!
    PIDS+=("$reader")
    while kill -0 "$reader" 2>/dev/null; do
        rss=$(rss_kb "$GATEWAY_PID")
        [ -n "$rss" ] && [ "$rss" -gt "$peak" ] && peak=$rss
        sleep 0.1
    done
    wait "$reader"
    end=$(date +%s.%N)
    sleep 0.2 # the tee's tail process
    rc=$(cat "$WORK/getkeys-curl.rc" 2>/dev/null || echo '?')
    commas=$(tr -d ' ' <"$WORK/getkeys-commas")
    tail_bytes=$(tr -d '\n' <"$WORK/getkeys-tail" 2>/dev/null)
    local count=$((commas + 1)) closed=1
    [ "$tail_bytes" = '[]' ] && count=0
    case "$tail_bytes" in *']') ;; *)
        closed=0
        say "the body does not end with ']' (last bytes: '$tail_bytes')"
        ;;
    esac
    [ "$rc" = 0 ] || say "curl exited $rc: $(cat "$WORK/getkeys-curl.err")"
    local seconds growth
    seconds=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')
    growth=$(((peak - before) / 1024))
    local rate
    rate=$(awk -v n="$count" -v s="$seconds" 'BEGIN { if (s > 0) printf "%.0f", n / s; else print "-" }')
    echo "getKeys: $count keys streamed in $seconds s ($rate keys/s), /status availableRecords" \
        "$expected, curl exit $rc"
    echo "  gateway VmRSS: $((before / 1024)) MB before, peak $((peak / 1024)) MB during the stream:" \
        "growth $growth MB ($((peak - before)) kB; limit 64 MB:" \
        "$([ "$growth" -lt 64 ] && echo met || echo MISSED))"
    printf 'GETKEYS %s %s %s %s %s\n' "$count" "$expected" "$growth" "$rc" "$seconds"
    [ "$rc" = 0 ] && [ "$closed" = 1 ] && [ "$count" = "$expected" ] && [ "$growth" -lt 64 ]
}

# --- join ----------------------------------------------------------------------

# spread COLUMN: max - min of a node_table column over active nodes.
spread() {
    node_table "$1" | awk -v c="$2" '$2 == "active" { v = c == 0 ? $3 + $4 : $c
        if (n++ == 0 || v < lo) lo = v; if (v > hi) hi = v } END { print n ? hi - lo : -1 }'
}

cmd_join() {
    local node_bin stress_bin status moving healthy start now elapsed balanced_at='' slots_at=''
    node_bin=$(binary kv-node node) || exit 1
    stress_bin=$(binary kv-stress tools) || exit 1
    status=$(status_get) || die "no /status from $URL"
    say "before the join:"
    node_table "$status" | sed 's/^/[bigkeys]   /' >&2
    # The client first: it preloads its keys, then reads and writes them
    # throughout the hand-off (requests far beyond what the move needs; it
    # is stopped with SIGINT once the cluster has settled).
    "$stress_bin" --url "$URL" --preload 20000 --seed 9 --mix get=90,set=10 --concurrency 16 \
        --requests 500000000 --progress 0 >"$WORK/join-stress.txt" 2>&1 &
    local stress_pid=$!
    PIDS+=("$stress_pid")
    sleep 2
    kill -0 "$stress_pid" 2>/dev/null || die "kv-stress exited early: $WORK/join-stress.txt"
    "$node_bin" --id "$NODE_ID" --bind "tcp://$HOST:$NODE_PORT" \
        --pub "tcp://$HOST:$((NODE_PORT + 1))" --coordinator "$COORD_EP" \
        >"$WORK/$NODE_ID.log" 2>&1 &
    local node_pid=$!
    PIDS+=("$node_pid")
    [ "$STOP_NODE" = 1 ] || KEEP_PIDS+=("$node_pid")
    [ -n "$NODE_PID_FILE" ] && echo "$node_pid" >"$NODE_PID_FILE"
    start=$(date +%s.%N)
    say "started $NODE_ID (pid $node_pid) on tcp://$HOST:$NODE_PORT; waiting for the hand-off"
    local last_report=0
    while :; do
        now=$(date +%s.%N)
        elapsed=$(awk -v a="$start" -v b="$now" 'BEGIN { printf "%.1f", b - a }')
        if ! kill -0 "$node_pid" 2>/dev/null; then
            say "$NODE_ID exited during the hand-off: $(tail -1 "$WORK/$NODE_ID.log")"
            break
        fi
        kill -0 "$stress_pid" 2>/dev/null || die "kv-stress stopped early: $WORK/join-stress.txt"
        if awk -v e="$elapsed" -v t="$MOVE_TIMEOUT" 'BEGIN { exit !(e > t) }'; then
            say "no balance after ${MOVE_TIMEOUT}s: giving up (see $WORK/coordinator.log, if any)"
            break
        fi
        status=$(status_get) || {
            sleep 0.25
            continue
        }
        moving=$(top_field "$status" movingPartitions)
        healthy=$(top_field "$status" healthy)
        local new_primaries
        new_primaries=$(node_table "$status" | awk -v id="$NODE_ID" '$1 == id && $2 == "active" { print $3 }')
        if [ -z "$balanced_at" ] && [ "$moving" = 0 ] && [ "$healthy" = true ] &&
            [ "${new_primaries:-0}" -gt 0 ] && [ "$(spread "$status" 3)" -le 1 ]; then
            balanced_at=$elapsed
            say "primaries balanced and nothing moving after ${elapsed}s"
        fi
        if [ -n "$balanced_at" ] && [ "$moving" = 0 ] && [ "$healthy" = true ] &&
            [ "$(spread "$status" 0)" -le 1 ]; then
            slots_at=$elapsed
            say "every node within one slot of the others after ${elapsed}s"
            break
        fi
        if awk -v e="$elapsed" -v l="$last_report" 'BEGIN { exit !(e - l >= 10) }'; then
            last_report=$elapsed
            say "${elapsed}s: $moving partitions moving; $(node_table "$status" |
                awk '{ printf "%s%s %s p/%s r", (NR > 1 ? ", " : ""), $1, $3, $4 }')"
        fi
        sleep 0.25
    done
    sleep 1 # a last second of traffic on the settled table
    kill -INT "$stress_pid" 2>/dev/null
    wait "$stress_pid" 2>/dev/null
    local ok errors preload_errors
    ok=$(awk '/^  succeeded/ { print $2 }' "$WORK/join-stress.txt")
    errors=$(awk '/^  errors +[0-9]/ { print $2 }' "$WORK/join-stress.txt")
    preload_errors=$(sed -n 's/.*preloaded .* s, \([0-9]*\) errors.*/\1/p' "$WORK/join-stress.txt")
    status=$(status_get)
    echo "join: $NODE_ID took its share in ${balanced_at:-(not within $MOVE_TIMEOUT )}s (nothing" \
        "moving, primaries within one); every node within one slot after" \
        "${slots_at:-(not within $MOVE_TIMEOUT )}s"
    local downs aborts
    aborts=$(grep -l 'Assertion failed' "$WORK"/*.log 2>/dev/null | xargs -r -n1 basename | paste -sd' ' -)
    [ -n "$aborts" ] && echo "  processes that aborted: $aborts ($(grep -h -m1 'Assertion failed' \
        "$WORK"/*.log | head -1))"
    downs=$(grep -c 'marked down' "$WORK/coordinator.log" 2>/dev/null)
    [ "${downs:-0}" -gt 0 ] && echo "  the coordinator marked nodes down $downs times" \
        "(missed heartbeats): $(grep 'marked down' "$WORK/coordinator.log" |
            sed 's/.*node \(node-[0-9]*\): no heartbeat for \([0-9]*\) ms.*/\1 \2 ms/' |
            head -5 | paste -sd, -)"
    echo "  kv-stress during the move (get=90,set=10, 16 connections, every answer checked):" \
        "${ok:-?} requests succeeded, ${errors:-?} failed (preload: ${preload_errors:-?} failed)"
    echo "  after: $(node_table "$status" | awk '{ printf "%s%s %s primaries %s replicas %s keys",
        (NR > 1 ? "; " : ""), $1, $3, $4, $5 }')"
    kill -0 "$node_pid" 2>/dev/null && echo "  $NODE_ID VmRSS $(($(rss_kb "$node_pid") / 1024)) MB"
    printf 'JOIN %s %s %s %s\n' "${balanced_at:--}" "${slots_at:--}" "${ok:-0}" \
        "$((${errors:-1} + ${preload_errors:-1}))"
    [ "${errors:-1}" = 0 ] && [ "${preload_errors:-1}" = 0 ] && [ -n "$slots_at" ]
}

# --- main ----------------------------------------------------------------------

case "${1:-}" in
latency)
    [ $# -eq 4 ] || die "usage: $0 latency KEYS SEED LABEL"
    cmd_latency "$2" "$3" "$4"
    ;;
getkeys) cmd_getkeys ;;
join) cmd_join ;;
*)
    sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'
    exit 2
    ;;
esac
