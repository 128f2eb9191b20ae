#!/usr/bin/env bash
# mem.sh: bytes per key against Redis at 10,000,000 keys, and what that many
# keys do to the cluster (`make bench-mem`).
#
# In one sitting, on loopback:
#   1. starts redis-server (no persistence) and our cluster: coordinator
#      (--replication 2 --min-nodes 3), 3 nodes and a gateway from BUILD_DIR,
#      with the flags scripts/run-local.sh uses, on ports of their own;
#   2. preloads 100,000 keys (k7-*, kv-stress through the gateway) and
#      measures /get latency on them (tools/bench/bigkeys.sh latency);
#   3. takes each node's VmRSS and Redis's used_memory and RSS, then loads
#      KEYS keys of (mostly) 11 bytes, k77-<n>, with 32-byte values into
#      Redis (redis-cli --pipe with generated protocol), then into the
#      cluster (kv-zstress straight to the primaries over ZeroMQ, routed by
#      the coordinator's table, --window requests in flight per node, every
#      reply checked);
#   4. once the nodes are idle (rehashes done: RSS stops moving), prints
#      bytes per stored copy = sum of the nodes' RSS growth / (KEYS x R)
#      against Redis's bytes per key (used_memory and RSS growth), and the
#      ratio (target: at most 0.7 of Redis's used_memory);
#   5. with the keys loaded (tools/bench/bigkeys.sh): /get latency on random
#      keys of the KEYS, /getKeys streamed whole (count, gateway RSS growth,
#      limit 64 MB), and a fourth node joining under a checked kv-stress
#      client (time to balance, failed requests: must be 0).
#
# Everything started here is stopped on exit (SIGINT, then SIGKILL after
# 5 s), Ctrl-C included. Logs and raw output stay in a /tmp/kv-mem.* folder
# (summary.txt). About 5 minutes and 4 GB of RAM at 10M keys.
#
# Settings (environment, defaults in brackets):
#   KV_MEM_BUILD_DIR [build/release]  where kv-* binaries are
#   KV_MEM_KEYS [10000000]            keys loaded into each store
#   KV_MEM_PORT_BASE [23000]          gateway +80, redis +379, coordinator
#                                     +550/+551, nodes +601, +603, +605, +607
#                                     (publishers +1)
#   KV_MEM_WINDOW [256]               kv-zstress requests in flight per node
#   KV_MEM_BIG [1]                    0: memory only, skip step 5
#   KV_MEM_JOIN [1]                   0: skip the fourth node
#   KV_MEM_DURATION [5], KV_MEM_REPS [3]  wrk seconds per run and runs
#   KV_MEM_COORD_ARGS []              extra kv-coordinator flags, e.g. "--max-moves 8"
#   KV_MEM_TTL [1]                    0: skip step 6 (expiry)
#   KV_MEM_TTL_KEYS [1000000]         keys with a ttl in step 6
#
# Step 6 (expiry), at the end with every other key still there: the nodes'
# CPU while idle (no key has a ttl yet); bytes per key of TTL_KEYS keys with
# a 1 h ttl, ours (RSS growth per copy) against Redis's (SET ... EX 3600,
# used_memory growth); 100,000 keys with a 1 s ttl among the others, timed
# from their load to their reclamation on every node (kv_node_expired_keys_total);
# /get latency while TTL_KEYS keys with a 3 s ttl expire.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT" || exit 2

BUILD_DIR=${KV_MEM_BUILD_DIR:-build/release}
DO_TTL=${KV_MEM_TTL:-1}
TTL_KEYS=${KV_MEM_TTL_KEYS:-1000000}
KEYS=${KV_MEM_KEYS:-10000000}
PORT_BASE=${KV_MEM_PORT_BASE:-23000}
WINDOW=${KV_MEM_WINDOW:-256}
DO_BIG=${KV_MEM_BIG:-1}
DO_JOIN=${KV_MEM_JOIN:-1}
DURATION=${KV_MEM_DURATION:-5}
REPS=${KV_MEM_REPS:-3}
read -r -a COORD_ARGS <<<"${KV_MEM_COORD_ARGS:-}"

HOST=127.0.0.1
NODES=3
REPLICATION=2
VALUE_SIZE=32
SMALL_KEYS=100000
SMALL_SEED=7 # k7-0 .. k7-99999, as make bench
SEED=77      # k77-<n>: 11 bytes for n in [1,000,000, 10,000,000)
GATEWAY_PORT=$((PORT_BASE + 80))
REDIS_PORT=$((PORT_BASE + 379))
COORD_PORT=$((PORT_BASE + 550))
COORD_PUB_PORT=$((PORT_BASE + 551))
NODE_BASE_PORT=$((PORT_BASE + 601))
COORD_EP=tcp://$HOST:$COORD_PORT
COORD_PUB_EP=tcp://$HOST:$COORD_PUB_PORT
URL=http://$HOST:$GATEWAY_PORT

WORK=$(mktemp -d /tmp/kv-mem.XXXXXX)
SUMMARY=$WORK/summary.txt
: >"$SUMMARY"

say() { printf '[mem] %s\n' "$*" >&2; }
die() {
    say "error: $*"
    exit 1
}
out() { printf '%s\n' "$*" | tee -a "$SUMMARY"; }

# --- processes ---------------------------------------------------------------

# shellcheck source=tools/bench/procs.sh
. "$ROOT/tools/bench/procs.sh"
LOADER_PID= # redis-cli --pipe while it loads

# Adds what was started outside `start`: the fourth node, the loader.
# shellcheck disable=SC2317 # invoked by stop_all
stop_hook() {
    [ -s "$WORK/node-4.pid" ] && PIDS+=("$(cat "$WORK/node-4.pid")")
    [ -n "$LOADER_PID" ] && PIDS+=("$LOADER_PID")
}

rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null; }

# Sum of VmRSS (kB) over the pids given.
rss_sum() {
    local pid sum=0 v
    for pid in "$@"; do
        v=$(rss_kb "$pid")
        sum=$((sum + ${v:-0}))
    done
    echo "$sum"
}

redis_info() { redis-cli -h "$HOST" -p "$REDIS_PORT" info memory | tr -d '\r' | sed -n "s/^$1://p"; }

check_alive() {
    local i
    for i in "${!PIDS[@]}"; do
        kill -0 "${PIDS[$i]}" 2>/dev/null || die "${NAMES[$i]} (pid ${PIDS[$i]}) is gone; see $WORK/${NAMES[$i]}.log"
    done
}

# --- steps ---------------------------------------------------------------------

preflight() {
    local tool
    for tool in wrk redis-server redis-cli taskset curl awk; do
        command -v "$tool" >/dev/null || die "$tool is missing (sudo scripts/install-deps.sh)"
    done
    COORD_BIN=$(binary kv-coordinator coordinator) || exit 1
    NODE_BIN=$(binary kv-node node) || exit 1
    GATEWAY_BIN=$(binary kv-gateway gateway) || exit 1
    STRESS_BIN=$(binary kv-stress tools) || exit 1
    ZSTRESS_BIN=$(binary kv-zstress tools) || exit 1
    local port busy=0 i
    local ports=("$GATEWAY_PORT" "$REDIS_PORT" "$COORD_PORT" "$COORD_PUB_PORT")
    for ((i = 0; i < 2 * (NODES + 1); i++)); do ports+=($((NODE_BASE_PORT + i))); done
    for port in "${ports[@]}"; do
        port_busy "$port" && say "port $port is in use" && busy=1
    done
    [ "$busy" -eq 0 ] || die "free those ports or set KV_MEM_PORT_BASE"
    local need_mb=$((KEYS * 400 / 1000000 + 1000)) avail_mb
    avail_mb=$(awk '/^MemAvailable:/ { print int($2 / 1024) }' /proc/meminfo)
    [ "$avail_mb" -ge "$need_mb" ] || die "about $need_mb MB of RAM needed, $avail_mb MB available"
}

start_servers() {
    start redis redis-server --port "$REDIS_PORT" --bind "$HOST" --save "" --appendonly no \
        --daemonize no --dir "$WORK"
    wait_ok redis 15 sh -c "redis-cli -h $HOST -p $REDIS_PORT ping | grep -q PONG"
    start coordinator "$COORD_BIN" --bind "$COORD_EP" --pub "$COORD_PUB_EP" --min-nodes "$NODES" \
        --replication "$REPLICATION" "${COORD_ARGS[@]}"
    local i port
    NODE_PIDS=()
    for ((i = 1; i <= NODES; i++)); do
        port=$((NODE_BASE_PORT + 2 * (i - 1)))
        start "node-$i" "$NODE_BIN" --id "node-$i" --bind "tcp://$HOST:$port" \
            --pub "tcp://$HOST:$((port + 1))" --coordinator "$COORD_EP"
        NODE_PIDS+=("${PIDS[-1]}")
    done
    start gateway "$GATEWAY_BIN" --host "$HOST" --port "$GATEWAY_PORT" --coordinator "$COORD_EP" \
        --coordinator-pub "$COORD_PUB_EP"
    GATEWAY_PID=${PIDS[-1]}
    wait_ok gateway 30 curl -fsS --max-time 1 "$URL/healthcheck"
    CLUSTER_PIDS="${PIDS[*]:1}" # coordinator, nodes, gateway
    say "redis on $REDIS_PORT; cluster: $NODES nodes, R=$REPLICATION, gateway $URL${COORD_ARGS[*]:+ (coordinator: ${COORD_ARGS[*]})}"
}

# bigkeys SUBCOMMAND ARGS...: tools/bench/bigkeys.sh against this cluster.
bigkeys() {
    KV_BIG_URL=$URL KV_BIG_COORDINATOR=$COORD_EP KV_BIG_GATEWAY_PID=$GATEWAY_PID \
        KV_BIG_SERVER_PIDS="$CLUSTER_PIDS" KV_BIG_DURATION=$DURATION KV_BIG_REPS=$REPS \
        KV_BIG_BUILD_DIR=$BUILD_DIR KV_BIG_NODE_PORT=$((NODE_BASE_PORT + 2 * NODES)) \
        KV_BIG_NODE_PID_FILE=$WORK/node-4.pid KV_BIG_WORK=$WORK \
        tools/bench/bigkeys.sh "$@"
}

preload_small() {
    say "preloading $SMALL_KEYS keys (k$SMALL_SEED-*) through the gateway"
    "$STRESS_BIN" --url "$URL" --requests "$SMALL_KEYS" --mix set=100 --seed "$SMALL_SEED" \
        --value-size "$VALUE_SIZE" --progress 0 >"$WORK/preload-small.txt" 2>&1 ||
        die "preloading failed: $WORK/preload-small.txt"
}

# Waits until the nodes' summed RSS holds still for 2 s (incremental rehashes
# finish in the nodes' idle time), at most 60 s. Prints the sum (kB).
settled_rss() {
    local last=-1 now i
    for ((i = 0; i < 60; i++)); do
        now=$(rss_sum "${NODE_PIDS[@]}")
        if [ "$last" -ge 0 ] && [ $((now - last)) -lt 1024 ] && [ $((last - now)) -lt 1024 ]; then
            echo "$now"
            return
        fi
        last=$now
        sleep 2
    done
    echo "$now"
}

# The two loads run one after the other: on a small shared machine, loading
# both at once starves the nodes' threads of CPU for long enough to miss
# heartbeats (the coordinator then fails them over mid-load).
load_big() {
    local start end
    say "loading $KEYS keys into redis (redis-cli --pipe)"
    start=$(date +%s.%N)
    awk -v n="$KEYS" -v seed="$SEED" 'BEGIN {
        v = "0123456789abcdefghijklmnopqrstuv"
        for (i = 0; i < n; i++) {
            k = "k" seed "-" i
            printf "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n", length(k), k, length(v), v
        }
    }' | redis-cli -h "$HOST" -p "$REDIS_PORT" --pipe >"$WORK/load-redis.txt" 2>&1 &
    LOADER_PID=$!
    wait "$LOADER_PID" || die "loading redis failed: $WORK/load-redis.txt"
    LOADER_PID=
    end=$(date +%s.%N)
    LOAD_REDIS_S=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')
    grep -q 'errors: 0' "$WORK/load-redis.txt" || die "redis load had errors: $WORK/load-redis.txt"
    say "redis loaded in ${LOAD_REDIS_S}s"
    say "loading $KEYS keys into the cluster (kv-zstress, window $WINDOW per node)"
    start=$(date +%s.%N)
    "$ZSTRESS_BIN" --coordinator "$COORD_EP" --mix set=100 --requests "$KEYS" --seed "$SEED" \
        --value-size "$VALUE_SIZE" --window "$WINDOW" --timeout-ms 10000 \
        >"$WORK/load-cluster.txt" 2>"$WORK/load-cluster.err" ||
        die "loading the cluster failed: $WORK/load-cluster.txt$(s_flaps)"
    end=$(date +%s.%N)
    LOAD_CLUSTER_S=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')
    say "cluster loaded in ${LOAD_CLUSTER_S}s: $(grep -m1 'ok in' "$WORK/load-cluster.txt")"
}

# Why a load may fail: nodes the coordinator marked down (missed heartbeats).
# kv-zstress routes by the table it fetched at start and does not follow a
# new one, so a failover mid-load turns into MOVED errors.
s_flaps() {
    local downs
    downs=$(grep -c 'marked down' "$WORK/coordinator.log")
    [ "$downs" -gt 0 ] && printf '\n  the coordinator marked nodes down %s times: %s' "$downs" \
        "$(grep -m3 'marked down' "$WORK/coordinator.log" | sed 's/^.*WARN //' | paste -sd';')"
}

memory_report() {
    local ours redis_used redis_rss ours_counted=0 i status m
    ours=$(awk -v a="$NODES_RSS_AFTER" -v b="$NODES_RSS_BEFORE" -v n="$KEYS" -v r="$REPLICATION" \
        'BEGIN { printf "%.1f", (a - b) * 1024 / (n * r) }')
    redis_used=$(awk -v a="$REDIS_USED_AFTER" -v b="$REDIS_USED_BEFORE" -v n="$KEYS" \
        'BEGIN { printf "%.1f", (a - b) / n }')
    redis_rss=$(awk -v a="$REDIS_RSS_AFTER" -v b="$REDIS_RSS_BEFORE" -v n="$KEYS" \
        'BEGIN { printf "%.1f", (a - b) / n }')
    status=$(curl -fsS --max-time 5 "$URL/status")
    for m in $(printf '%s\n' "$status" | grep -o '"memoryBytes": *[0-9]*' | grep -o '[0-9]*$'); do
        ours_counted=$((ours_counted + m))
    done
    out ""
    out "Memory: $KEYS keys (k$SEED-<n>, mostly 11 bytes), $VALUE_SIZE-byte values"
    out "  cluster: 3 nodes, R=$REPLICATION, loaded by kv-zstress in ${LOAD_CLUSTER_S}s" \
        "($(awk -v n="$KEYS" -v s="$LOAD_CLUSTER_S" 'BEGIN { printf "%.0f", n / s }') keys/s)"
    for i in "${!NODE_PIDS[@]}"; do
        out "    node-$((i + 1)): VmRSS $((NODE_RSS_BEFORE[i] / 1024)) MB -> $((NODE_RSS_AFTER[i] / 1024)) MB"
    done
    out "    bytes per stored copy: $ours (RSS growth / (keys x $REPLICATION));" \
        "the dicts count $(awk -v m="$ours_counted" -v n="$KEYS" -v r="$REPLICATION" \
            'BEGIN { printf "%.1f", m / (n * r) }') (kv_store_memory, all keys)"
    out "  redis $(redis-server --version | grep -o 'v=[0-9.]*' | cut -c3-): loaded by redis-cli --pipe in ${LOAD_REDIS_S}s"
    out "    used_memory $((REDIS_USED_BEFORE / 1048576)) MB -> $((REDIS_USED_AFTER / 1048576)) MB: $redis_used bytes per key"
    out "    RSS         $((REDIS_RSS_BEFORE / 1048576)) MB -> $((REDIS_RSS_AFTER / 1048576)) MB: $redis_rss bytes per key"
    local r1 r2
    r1=$(awk -v a="$ours" -v b="$redis_used" 'BEGIN { printf "%.2f", a / b }')
    r2=$(awk -v a="$ours" -v b="$redis_rss" 'BEGIN { printf "%.2f", a / b }')
    out "  ours per copy vs redis per key: ${r1}x of used_memory, ${r2}x of RSS" \
        "(target <= 0.70x: $(awk -v r="$r1" 'BEGIN { print r <= 0.7 ? "met" : "MISSED" }'))"
    MEM_RATIO=$r1
}

# --- expiry (step 6) ------------------------------------------------------------

EXPIRE_KEYS=100000 # keys with a 1 s ttl among the others

# Every node's pid, the fourth one's too once it joined.
all_node_pids() {
    local pids=("${NODE_PIDS[@]}")
    [ -s "$WORK/node-4.pid" ] && pids+=("$(cat "$WORK/node-4.pid")")
    echo "${pids[@]}"
}

# Sum of user + system CPU ticks of the pids given.
cpu_ticks() {
    local pid sum=0 t
    for pid in "$@"; do
        t=$(awk '{ print $14 + $15 }' "/proc/$pid/stat" 2>/dev/null)
        sum=$((sum + ${t:-0}))
    done
    echo "$sum"
}

# Keys the nodes removed by expiry so far (as primaries), summed.
expired_total() {
    curl -fsS --max-time 5 "$URL/status" | grep -o '"kv_node_expired_keys_total": *[0-9]*' |
        grep -o '[0-9]*$' | awk '{ s += $1 } END { print s + 0 }'
}

# load_ttl SEED COUNT TTL: kv-zstress sets of new keys k<SEED>-<n> with a ttl.
load_ttl() {
    "$ZSTRESS_BIN" --coordinator "$COORD_EP" --mix set=100 --requests "$2" --seed "$1" \
        --value-size "$VALUE_SIZE" --window "$WINDOW" --timeout-ms 10000 --ttl "$3" \
        >"$WORK/load-ttl-$1.txt" 2>&1 || die "loading keys with a ttl failed: $WORK/load-ttl-$1.txt"
}

expiry_idle_cpu() {
    local pids before after hz
    read -r -a pids <<<"$(all_node_pids)"
    hz=$(getconf CLK_TCK)
    before=$(cpu_ticks "${pids[@]}")
    sleep 5
    after=$(cpu_ticks "${pids[@]}")
    out "  idle, no key with a ttl: the ${#pids[@]} nodes used" \
        "$(awk -v t=$((after - before)) -v hz="$hz" 'BEGIN { printf "%.0f", t * 1000 / hz / 5 }') ms of CPU per second"
}

expiry_bytes() {
    local pids rss_before rss_after used_before used_after ours redis ratio
    read -r -a pids <<<"$(all_node_pids)"
    used_before=$(redis_info used_memory)
    awk -v n="$TTL_KEYS" 'BEGIN {
        v = "0123456789abcdefghijklmnopqrstuv"
        for (i = 0; i < n; i++) {
            k = "k78-" i
            printf "*5\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n$2\r\nEX\r\n$4\r\n3600\r\n", length(k), k, length(v), v
        }
    }' | redis-cli -h "$HOST" -p "$REDIS_PORT" --pipe >"$WORK/load-redis-ttl.txt" 2>&1 ||
        die "loading redis with ttls failed"
    used_after=$(redis_info used_memory)
    rss_before=$(rss_sum "${pids[@]}")
    load_ttl 78 "$TTL_KEYS" 3600
    local saved=("${NODE_PIDS[@]}")
    NODE_PIDS=("${pids[@]}") # settled_rss watches these
    rss_after=$(settled_rss)
    NODE_PIDS=("${saved[@]}")
    ours=$(awk -v a="$rss_after" -v b="$rss_before" -v n="$TTL_KEYS" -v r="$REPLICATION" \
        'BEGIN { printf "%.1f", (a - b) * 1024 / (n * r) }')
    redis=$(awk -v a="$used_after" -v b="$used_before" -v n="$TTL_KEYS" 'BEGIN { printf "%.1f", (a - b) / n }')
    ratio=$(awk -v a="$ours" -v b="$redis" 'BEGIN { printf "%.2f", a / b }')
    out "  $TTL_KEYS keys with a 1 h ttl: $ours bytes per stored copy, redis $redis bytes per key" \
        "(used_memory): ${ratio}x (target <= 0.70x: $(awk -v r="$ratio" 'BEGIN { print r <= 0.7 ? "met" : "MISSED" }'))"
    TTL_RATIO=$ratio
}

expiry_reclaim() {
    local base start loaded done_at now last_deadline i
    base=$(expired_total)
    start=$(date +%s.%N)
    load_ttl 79 "$EXPIRE_KEYS" 1
    loaded=$(date +%s.%N)
    last_deadline=$(awk -v t="$loaded" 'BEGIN { printf "%.3f", t + 1 }')
    done_at=
    for ((i = 0; i < 600; i++)); do
        now=$(expired_total)
        if [ $((now - base)) -ge "$EXPIRE_KEYS" ]; then
            done_at=$(date +%s.%N)
            break
        fi
        sleep 0.05
    done
    [ -n "$done_at" ] || die "$EXPIRE_KEYS keys with a 1 s ttl not reclaimed in 30 s ($((now - base)) were)"
    out "  $EXPIRE_KEYS keys with a 1 s ttl among $KEYS without, loaded in" \
        "$(awk -v a="$start" -v b="$loaded" 'BEGIN { printf "%.1f", b - a }') s: all reclaimed" \
        "$(awk -v a="$last_deadline" -v b="$done_at" 'BEGIN { printf "%.2f", b - a }') s after the last deadline" \
        "(target <= 2 s: $(awk -v a="$last_deadline" -v b="$done_at" 'BEGIN { print b - a <= 2 ? "met" : "MISSED" }'))"
    RECLAIM_S=$(awk -v a="$last_deadline" -v b="$done_at" 'BEGIN { printf "%.2f", b - a }')
}

expiry_latency() {
    local base line label rps p50 p99 errors expired
    load_ttl 80 "$TTL_KEYS" 3
    base=$(expired_total)
    DURATION=6 REPS=1 bigkeys latency "$SMALL_KEYS" "$SMALL_SEED" wave >"$WORK/latency-wave.out" ||
        die "latency run failed"
    expired=$(($(expired_total) - base))
    line=$(tail -1 "$WORK/latency-wave.out")
    read -r _ label rps p50 p99 errors <<<"$line"
    out "$(printf '  /get while %s keys expired: %8.0f req/s  p50 %6.3f ms  p99 %6.3f ms  errors %s (target p99 < 10 ms: %s)' \
        "$expired" "$rps" "$(awk -v u="$p50" 'BEGIN { print u / 1000 }')" \
        "$(awk -v u="$p99" 'BEGIN { print u / 1000 }')" "$errors" \
        "$(awk -v u="$p99" 'BEGIN { print u < 10000 ? "met" : "MISSED" }')")"
    [ "$errors" = 0 ] || FAILED=1
    WAVE_P99_US=$p99
}

# --- main ----------------------------------------------------------------------

preflight
out "mem.sh $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs ($(lscpu 2>/dev/null | sed -n 's/^Model name: *//p')), $(awk '/^MemTotal:/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), kernel $(uname -r)"
out "load $(cut -d' ' -f1-3 /proc/loadavg) at start; logs in $WORK"
start_servers
preload_small
if [ "$DO_BIG" = 1 ]; then
    say "/get latency on $SMALL_KEYS keys"
    bigkeys latency "$SMALL_KEYS" "$SMALL_SEED" 100k >"$WORK/latency-small.out" ||
        die "latency run failed"
fi
check_alive

sleep 2
NODE_RSS_BEFORE=()
for pid in "${NODE_PIDS[@]}"; do NODE_RSS_BEFORE+=("$(rss_kb "$pid")"); done
NODES_RSS_BEFORE=$(rss_sum "${NODE_PIDS[@]}")
REDIS_USED_BEFORE=$(redis_info used_memory)
REDIS_RSS_BEFORE=$(redis_info used_memory_rss)
load_big
check_alive
say "waiting for the nodes to settle (rehashes finish in idle time)"
NODES_RSS_AFTER=$(settled_rss)
NODE_RSS_AFTER=()
for pid in "${NODE_PIDS[@]}"; do NODE_RSS_AFTER+=("$(rss_kb "$pid")"); done
REDIS_USED_AFTER=$(redis_info used_memory)
REDIS_RSS_AFTER=$(redis_info used_memory_rss)
memory_report

FAILED=0
if [ "$DO_BIG" = 1 ]; then
    say "/get latency on $KEYS keys"
    bigkeys latency $((KEYS * 9 / 10)) "$SEED" big >"$WORK/latency-big.out" || die "latency run failed"
    small=$(tail -1 "$WORK/latency-small.out")
    big=$(tail -1 "$WORK/latency-big.out")
    out ""
    out "/get latency (wrk -t1 -c50 -d${DURATION}s, medians of $REPS; cluster on CPU 0, wrk on CPU 1):"
    for line in "$small" "$big"; do
        read -r _ label rps p50 p99 errors <<<"$line"
        out "$(printf '  %-22s %8.0f req/s  p50 %6.3f ms  p99 %6.3f ms  errors %s' \
            "$([ "$label" = 100k ] && echo "$SMALL_KEYS keys" || echo "$KEYS keys")" "$rps" \
            "$(awk -v u="$p50" 'BEGIN { print u / 1000 }')" "$(awk -v u="$p99" 'BEGIN { print u / 1000 }')" \
            "$errors")"
        [ "$errors" = 0 ] || FAILED=1
    done
    check_alive
    say "streaming /getKeys"
    bigkeys getkeys >"$WORK/getkeys.out" || FAILED=1
    out ""
    grep -v '^GETKEYS' "$WORK/getkeys.out" | tee -a "$SUMMARY"
    check_alive
    if [ "$DO_JOIN" = 1 ]; then
        say "adding a fourth node under load"
        bigkeys join >"$WORK/join.out" || FAILED=1
        out ""
        grep -v '^JOIN' "$WORK/join.out" | tee -a "$SUMMARY"
    fi
fi
if [ "$DO_TTL" = 1 ]; then
    check_alive
    out ""
    out "Expiry (keys k78-*, k79-*, k80-* loaded by kv-zstress, $KEYS others in place):"
    expiry_idle_cpu
    say "bytes per key with a ttl"
    expiry_bytes
    say "a wave of 1 s ttls"
    expiry_reclaim
    say "/get latency while keys expire"
    expiry_latency
fi
out ""
out "load $(cut -d' ' -f1-3 /proc/loadavg) at the end (other work on this machine adds noise)"
[ "$FAILED" -eq 0 ] || die "a check failed; see $SUMMARY"
awk -v r="$MEM_RATIO" 'BEGIN { exit !(r <= 0.7) }' || die "memory ratio $MEM_RATIO above 0.70"
if [ "$DO_TTL" = 1 ]; then
    awk -v r="$TTL_RATIO" 'BEGIN { exit !(r <= 0.7) }' || die "memory ratio with ttls $TTL_RATIO above 0.70"
    awk -v s="$RECLAIM_S" 'BEGIN { exit !(s <= 2) }' || die "reclaiming took $RECLAIM_S s after the deadline"
    awk -v u="$WAVE_P99_US" 'BEGIN { exit !(u < 10000) }' || die "p99 $WAVE_P99_US us while keys expired"
fi
exit 0
