#!/usr/bin/env bash
# bench.sh: the store against its peers, with one load generator, in one sitting.
#
# Measures, with wrk (1 thread pinned to CLIENT_CPU, CONNECTIONS connections,
# DURATION seconds, REPS repetitions, medians) against servers pinned to
# SERVER_CPU:
#   kvstore  our cluster: coordinator, 3 nodes and one gateway from BUILD_DIR,
#            started with the flags scripts/run-local.sh uses, on other ports;
#            /get on KEYS preloaded keys and /set of new keys, 32-byte values
#   webdis   redis-server (no persistence) behind webdis with 2 threads:
#            /GET/k and /SET/k/v, the same keys and values
#   mhd      kv-bench-mhd: libmicrohttpd alone with the gateway's thread pool
#            size, a fixed 3-byte body: the ceiling of any MHD gateway
# then prints a table (req/s, p50, p99) and our ratios to each peer against
# the targets of docs/benchmarks.md. Repetitions are interleaved
# (rep 1 of every target, then rep 2, ...) so noise from other work on the
# machine spreads over all targets: ratios within a run are what count.
#
# Then, unless turned off: CPU time and context switches per request of each
# server (perf stat during an extra /get run), a perf profile of the cluster
# under /get, and kv-zstress scaling from 1 to 3 nodes without HTTP.
#
# Everything started here is stopped on exit (SIGINT, then SIGKILL after
# 5 s), Ctrl-C included. Logs and raw results stay in a /tmp/kv-bench.*
# folder, printed at the end.
#
# Settings (environment, defaults in brackets):
#   KV_BENCH_BUILD_DIR [build/release]  where kv-* binaries are
#   KV_BENCH_DURATION [10]              seconds per wrk run
#   KV_BENCH_REPS [3]                   repetitions (medians over them)
#   KV_BENCH_CONNECTIONS [50]           wrk connections
#   KV_BENCH_KEYS [100000]              keys preloaded for /get
#   KV_BENCH_REPLICATION [2]            --replication for the coordinator; falls
#                                       back to 1 (with a warning) if refused
#   KV_BENCH_SERVER_CPU [0]             CPU list for every server
#   KV_BENCH_CLIENT_CPU [1]             CPU list for wrk and the preloaders
#   KV_BENCH_PORT_BASE [19000]          gateway +80, webdis +81, bare MHD +82,
#                                       redis +379, coordinator +550/+551,
#                                       nodes +601, +603, +605 (publishers +1)
#   KV_BENCH_TRANSPORT [ipc]            how gateway and nodes talk: ipc (Unix
#                                       sockets: every process is on this host)
#                                       or tcp (loopback, as across hosts)
#   KV_BENCH_PERF [1]                   perf stat + profile (needs perf)
#   KV_BENCH_ZSTRESS [1]                kv-zstress scaling runs
#   KV_BENCH_ROUTES [get set setif mget tx] what to measure: get, set
#                                       (every target); setif (/set?ifVersion=0
#                                       against webdis SETNX), mget (/mget of
#                                       10 keys against webdis MGET), tx (/tx
#                                       creating two keys if both are absent
#                                       against webdis EVAL of a Lua script
#                                       doing the same) on kvstore and webdis
#                                       only
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT" || exit 2

BUILD_DIR=${KV_BENCH_BUILD_DIR:-build/release}
DURATION=${KV_BENCH_DURATION:-10}
REPS=${KV_BENCH_REPS:-3}
CONNECTIONS=${KV_BENCH_CONNECTIONS:-50}
KEYS=${KV_BENCH_KEYS:-100000}
KV_BENCH_REPLICATION=${KV_BENCH_REPLICATION:-2}
SERVER_CPU=${KV_BENCH_SERVER_CPU:-0}
CLIENT_CPU=${KV_BENCH_CLIENT_CPU:-1}
PORT_BASE=${KV_BENCH_PORT_BASE:-19000}
DO_PERF=${KV_BENCH_PERF:-1}
DO_ZSTRESS=${KV_BENCH_ZSTRESS:-1}
TRANSPORT=${KV_BENCH_TRANSPORT:-ipc}
read -ra ROUTES <<<"${KV_BENCH_ROUTES:-get set setif mget tx}"

HOST=127.0.0.1
NODES=3
VALUE_SIZE=32 # set.lua writes 32-byte values too
SEED=7        # preloaded keys are k7-0 .. k7-<KEYS-1> everywhere
GATEWAY_PORT=$((PORT_BASE + 80))
WEBDIS_PORT=$((PORT_BASE + 81))
MHD_PORT=$((PORT_BASE + 82))
REDIS_PORT=$((PORT_BASE + 379))
COORD_PORT=$((PORT_BASE + 550))
COORD_PUB_PORT=$((PORT_BASE + 551))
NODE_BASE_PORT=$((PORT_BASE + 601))
COORD_EP=tcp://$HOST:$COORD_PORT
COORD_PUB_EP=tcp://$HOST:$COORD_PUB_PORT
TARGETS=(kvstore webdis mhd)
declare -A URL=([kvstore]=http://$HOST:$GATEWAY_PORT [webdis]=http://$HOST:$WEBDIS_PORT
    [mhd]=http://$HOST:$MHD_PORT)
declare -A STYLE=([kvstore]=kv [webdis]=webdis [mhd]=kv)
declare -A LABEL=([kvstore]="kvstore (3 nodes)" [webdis]="redis + webdis" [mhd]="bare MHD (ceiling)")
declare -A PIDS_OF=() # target -> server pids, for perf

WORK=$(mktemp -d /tmp/kv-bench.XXXXXX)
RESULTS=$WORK/results.txt
SUMMARY=$WORK/summary.txt
: >"$RESULTS"

say() { printf '[bench] %s\n' "$*" >&2; }
die() {
    say "error: $*"
    exit 1
}

# --- processes ---------------------------------------------------------------

# shellcheck source=tools/bench/procs.sh
. "$ROOT/tools/bench/procs.sh"
START_WRAP=(taskset -c "$SERVER_CPU") # every server on the server CPU

# --- checks --------------------------------------------------------------------

preflight() {
    local tool
    for tool in wrk redis-server redis-cli webdis taskset curl awk; do
        command -v "$tool" >/dev/null || die "$tool is missing (sudo scripts/install-deps.sh)"
    done
    if [ "$DO_PERF" = 1 ] && ! command -v perf >/dev/null; then
        say "perf not found: skipping CPU accounting and the profile"
        DO_PERF=0
    fi
    if [ "$(nproc)" -lt 2 ] && [ "$SERVER_CPU" != "$CLIENT_CPU" ]; then
        say "warning: one CPU only: client and servers share it"
        SERVER_CPU=0 CLIENT_CPU=0
        START_WRAP=(taskset -c "$SERVER_CPU")
    fi
    COORD_BIN=$(binary kv-coordinator coordinator) || exit 1
    NODE_BIN=$(binary kv-node node) || exit 1
    GATEWAY_BIN=$(binary kv-gateway gateway) || exit 1
    STRESS_BIN=$(binary kv-stress tools) || exit 1
    ZSTRESS_BIN=$(binary kv-zstress tools) || exit 1
    MHD_BIN=$(binary kv-bench-mhd tools) || exit 1
    local port busy=0 i
    local ports=("$GATEWAY_PORT" "$WEBDIS_PORT" "$MHD_PORT" "$REDIS_PORT" "$COORD_PORT"
        "$COORD_PUB_PORT")
    for ((i = 0; i < 2 * NODES; i++)); do ports+=($((NODE_BASE_PORT + i))); done
    for port in "${ports[@]}"; do
        port_busy "$port" && say "port $port is in use" && busy=1
    done
    [ "$busy" -eq 0 ] || die "free those ports or set KV_BENCH_PORT_BASE"
}

# The replication factor to run with: KV_BENCH_REPLICATION if the coordinator
# accepts it (its flag parser rejects values out of range before --help is
# reached, and exits 2), else 1.
pick_replication() {
    if "$COORD_BIN" --replication "$KV_BENCH_REPLICATION" --help >/dev/null 2>&1; then
        REPLICATION=$KV_BENCH_REPLICATION
    else
        say "warning: kv-coordinator refuses --replication $KV_BENCH_REPLICATION; benchmarking with 1"
        REPLICATION=1
    fi
}

# --- servers -----------------------------------------------------------------

start_cluster() {
    pick_replication
    local first=${#PIDS[@]} i port
    start coordinator "$COORD_BIN" --bind "$COORD_EP" --pub "$COORD_PUB_EP" --min-nodes "$NODES" \
        --replication "$REPLICATION"
    for ((i = 1; i <= NODES; i++)); do
        port=$((NODE_BASE_PORT + 2 * (i - 1)))
        if [ "$TRANSPORT" = ipc ]; then
            start "node-$i" "$NODE_BIN" --id "node-$i" --bind "ipc://$WORK/node-$i.sock" \
                --pub "ipc://$WORK/node-$i-pub.sock" --coordinator "$COORD_EP"
        else
            start "node-$i" "$NODE_BIN" --id "node-$i" --bind "tcp://$HOST:$port" \
                --pub "tcp://$HOST:$((port + 1))" --coordinator "$COORD_EP"
        fi
    done
    start gateway "$GATEWAY_BIN" --host "$HOST" --port "$GATEWAY_PORT" --coordinator "$COORD_EP" \
        --coordinator-pub "$COORD_PUB_EP"
    wait_ok gateway 30 curl -fsS --max-time 1 "${URL[kvstore]}/healthcheck"
    PIDS_OF[kvstore]="${PIDS[*]:$first}"
    GATEWAY_PID=${PIDS[-1]}
    NODE_PIDS="${PIDS[*]:$((first + 1)):$NODES}"
    GATEWAY_THREADS=$(curl -fsS "${URL[kvstore]}/settings" | grep -o '"threads": *[0-9]*' |
        grep -o '[0-9]*$')
    GATEWAY_THREADS=${GATEWAY_THREADS:-2}
    say "kvstore: 3 nodes ($TRANSPORT), replication $REPLICATION, gateway with $GATEWAY_THREADS threads on ${URL[kvstore]}"
}

start_webdis() {
    local first=${#PIDS[@]}
    start redis redis-server --port "$REDIS_PORT" --bind "$HOST" --save "" --appendonly no \
        --daemonize no --dir "$WORK"
    wait_ok redis 15 sh -c "redis-cli -h $HOST -p $REDIS_PORT ping | grep -q PONG"
    cat >"$WORK/webdis.json" <<EOF
{
    "redis_host": "$HOST",
    "redis_port": $REDIS_PORT,
    "redis_auth": null,
    "http_host": "$HOST",
    "http_port": $WEBDIS_PORT,
    "threads": 2,
    "daemonize": false,
    "database": 0,
    "verbosity": 1,
    "logfile": "$WORK/webdis-internal.log"
}
EOF
    start webdis webdis "$WORK/webdis.json"
    wait_ok webdis 15 curl -fsS --max-time 1 "${URL[webdis]}/PING"
    PIDS_OF[webdis]="${PIDS[*]:$first}"
    say "webdis: 2 threads on ${URL[webdis]}, redis on port $REDIS_PORT (no persistence)"
}

start_mhd() {
    start mhd "$MHD_BIN" --host "$HOST" --port "$MHD_PORT" --threads "$GATEWAY_THREADS"
    wait_ok mhd 10 curl -fsS --max-time 1 "${URL[mhd]}/"
    PIDS_OF[mhd]=${PIDS[-1]}
    say "bare MHD: $GATEWAY_THREADS threads on ${URL[mhd]}"
}

# Writes k7-0 .. k7-<KEYS-1> with 32-byte values: through the gateway with
# kv-stress (which checks every answer), and into redis with redis-cli --pipe.
preload() {
    say "preloading $KEYS keys into kvstore (kv-stress) and redis (redis-cli --pipe)"
    taskset -c "$CLIENT_CPU" "$STRESS_BIN" --url "${URL[kvstore]}" --requests "$KEYS" \
        --mix set=100 --seed "$SEED" --value-size "$VALUE_SIZE" --progress 0 \
        >"$WORK/preload-kvstore.txt" 2>&1 || die "preloading kvstore failed: $WORK/preload-kvstore.txt"
    awk -v n="$KEYS" -v seed="$SEED" 'BEGIN {
        v = "0123456789abcdefghijklmnopqrstuv"
        for (i = 0; i < n; i++) {
            k = "k" seed "-" i
            printf "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n", length(k), k, length(v), v
        }
    }' | taskset -c "$CLIENT_CPU" redis-cli -h "$HOST" -p "$REDIS_PORT" --pipe \
        >"$WORK/preload-redis.txt" 2>&1 || die "preloading redis failed: $WORK/preload-redis.txt"
    grep -q 'errors: 0' "$WORK/preload-redis.txt" || die "redis preload had errors"
}

# --- measuring ---------------------------------------------------------------

# Dies when a server of TARGET is gone (crashed, or killed from outside).
check_alive() {
    local pid
    for pid in ${PIDS_OF[$1]}; do
        kill -0 "$pid" 2>/dev/null ||
            die "a ${LABEL[$1]} process (pid $pid) is gone; logs in $WORK (killed from outside?)"
    done
}

# run_wrk TARGET ROUTE SECONDS OUT: one wrk run; prints its KVBENCH line.
run_wrk() {
    local target=$1 route=$2 seconds=$3 out=$4 args
    check_alive "$target"
    if [ "$route" = get ] || [ "$route" = mget ]; then
        args=("${STYLE[$target]}" "$KEYS" "$SEED")
    else
        args=("${STYLE[$target]}" "$(basename "$out" .txt | tr -cd 'a-z0-9')")
    fi
    local keys_before=0
    [ "$target.$route" != webdis.tx ] || keys_before=$(redis_keys)
    taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNECTIONS" -d"${seconds}s" --timeout 2s \
        -s "tools/bench/$route.lua" "${URL[$target]}" -- "${args[@]}" >"$out" 2>&1
    [ "$target.$route" != webdis.tx ] || tx_written "$out" "$keys_before"
    grep -m1 '^KVBENCH' "$out"
}

redis_keys() { redis-cli -h "$HOST" -p "$REDIS_PORT" dbsize; }

# tx_written OUT KEYS_BEFORE: dies unless the webdis tx run into OUT created
# two keys per request counted: its script answers 0 (still HTTP 200) when
# a condition fails and it writes nothing, which wrk would count as done work.
tx_written() {
    local requests created
    requests=$(field "$(grep -m1 '^KVBENCH' "$1")" requests)
    created=$(($(redis_keys) - $2))
    [ "$created" -ge $((2 * ${requests:-0})) ] ||
        die "webdis EVAL created $created keys for $requests requests: $1"
}

# field LINE NAME: the value of NAME=... in a KVBENCH line.
field() { printf '%s\n' "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"; }

# measured TARGET ROUTE: whether the route is measured on the target (the
# bare MHD server is a ceiling for plain requests only).
measured() { [ "$1" != mhd ] || [ "$2" = get ] || [ "$2" = set ]; }

# has_route ROUTE: whether KV_BENCH_ROUTES asked for it.
has_route() { [[ " ${ROUTES[*]} " == *" $1 "* ]]; }

measure() {
    local rep target route line
    say "warm-up: 2 s of /get per target"
    for target in "${TARGETS[@]}"; do
        run_wrk "$target" get 2 "$WORK/warmup-$target.txt" >/dev/null
    done
    for ((rep = 1; rep <= REPS; rep++)); do
        for route in "${ROUTES[@]}"; do
            for target in "${TARGETS[@]}"; do
                measured "$target" "$route" || continue
                line=$(run_wrk "$target" "$route" "$DURATION" "$WORK/wrk-$target-$route-$rep.txt")
                [ -n "$line" ] || die "wrk printed no result: $WORK/wrk-$target-$route-$rep.txt"
                printf '%s %s %s %s %s %s %s\n' "$target" "$route" "$rep" "$(field "$line" rps)" \
                    "$(field "$line" p50_us)" "$(field "$line" p99_us)" \
                    "$(($(field "$line" non2xx) + $(field "$line" socket_errors)))" >>"$RESULTS"
                say "$(printf 'rep %d  %-4s %-20s %9.0f req/s  p50 %6.3f ms  p99 %6.3f ms  errors %s' \
                    "$rep" "$route" "${LABEL[$target]}" "$(field "$line" rps)" \
                    "$(awk -v u="$(field "$line" p50_us)" 'BEGIN{print u/1000}')" \
                    "$(awk -v u="$(field "$line" p99_us)" 'BEGIN{print u/1000}')" \
                    "$(($(field "$line" non2xx) + $(field "$line" socket_errors)))")"
            done
        done
    done
}

# median TARGET ROUTE COLUMN (4 rps, 5 p50 us, 6 p99 us; 7 errors: summed).
median() {
    awk -v t="$1" -v r="$2" -v c="$3" '$1 == t && $2 == r { print $c }' "$RESULTS" | sort -g |
        awk -v c="$3" '{ v[NR] = $1; s += $1 }
            END { if (!NR) print 0; else if (c == 7) print s;
                  else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# verdict VALUE OP TARGET: "met" or "MISSED".
verdict() { awk -v v="$1" -v t="$3" -v op="$2" 'BEGIN { ok = op == ">=" ? v >= t : v <= t;
    print ok ? "met" : "MISSED" }'; }

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; }

# write_section TITLE ROUTE NAME PEER TARGET: req/s, p50 and p99 of ROUTE on
# kvstore and webdis (report's medians M), then kvstore's ROUTE (NAME)
# against its own /set (target: at least TARGET times) and against webdis's
# nearest command PEER.
write_section() {
    local target r
    echo
    printf '%-20s %11s %9s %9s\n' "$1" "req/s" "p50 ms" "p99 ms"
    for target in kvstore webdis; do
        printf '%-20s %11.0f %9.3f %9.3f\n' "${LABEL[$target]}" "${M[$target.$2.rps]}" \
            "$(awk -v u="${M[$target.$2.p50]}" 'BEGIN{print u/1000}')" \
            "$(awk -v u="${M[$target.$2.p99]}" 'BEGIN{print u/1000}')"
    done
    r=$(ratio "${M[kvstore.$2.rps]}" "${M[kvstore.set.rps]}")
    printf '  %-16s vs /set  %5sx   target >= %.2fx   %s\n' "$3" "$r" "$5" "$(verdict "$r" ">=" "$5")"
    r=$(ratio "${M[kvstore.$2.rps]}" "${M[webdis.$2.rps]}")
    printf '  %-16s vs %-5s %5sx   (no target)\n' "$3" "$4" "$r"
}

report() {
    local target route
    declare -A M
    for target in "${TARGETS[@]}"; do
        for route in get set setif mget tx; do
            M[$target.$route.rps]=$(median "$target" "$route" 4)
            M[$target.$route.p50]=$(median "$target" "$route" 5)
            M[$target.$route.p99]=$(median "$target" "$route" 6)
            M[$target.$route.err]=$(median "$target" "$route" 7)
        done
    done
    {
        echo
        echo "Results: medians of $REPS runs; wrk -t1 -c$CONNECTIONS -d${DURATION}s pinned to CPU $CLIENT_CPU, servers pinned to CPU $SERVER_CPU"
        echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs ($(lscpu 2>/dev/null | sed -n 's/^Model name: *//p')), kernel $(uname -r)"
        echo "kvstore: $NODES nodes over $TRANSPORT, replication $REPLICATION, gateway threads $GATEWAY_THREADS; $KEYS preloaded keys, $VALUE_SIZE-byte values"
        echo
        printf '%-20s %11s %9s %9s   %11s %9s %9s   %s\n' "" "get req/s" "p50 ms" "p99 ms" \
            "set req/s" "p50 ms" "p99 ms" "errors"
        for target in "${TARGETS[@]}"; do
            printf '%-20s %11.0f %9.3f %9.3f   %11.0f %9.3f %9.3f   %d\n' "${LABEL[$target]}" \
                "${M[$target.get.rps]}" "$(awk -v u="${M[$target.get.p50]}" 'BEGIN{print u/1000}')" \
                "$(awk -v u="${M[$target.get.p99]}" 'BEGIN{print u/1000}')" \
                "${M[$target.set.rps]}" "$(awk -v u="${M[$target.set.p50]}" 'BEGIN{print u/1000}')" \
                "$(awk -v u="${M[$target.set.p99]}" 'BEGIN{print u/1000}')" \
                "$((${M[$target.get.err]} + ${M[$target.set.err]}))"
        done
        echo
        local r
        echo "kvstore against its peers (targets from docs/benchmarks.md):"
        r=$(ratio "${M[kvstore.get.rps]}" "${M[webdis.get.rps]}")
        printf '  /get req/s  vs webdis    %5sx   target >= 1.50x   %s\n' "$r" "$(verdict "$r" ">=" 1.5)"
        r=$(ratio "${M[kvstore.set.rps]}" "${M[webdis.set.rps]}")
        printf '  /set req/s  vs webdis    %5sx   target >= 1.00x   %s\n' "$r" "$(verdict "$r" ">=" 1.0)"
        r=$(ratio "${M[kvstore.get.p99]}" "${M[webdis.get.p99]}")
        printf '  /get p99    vs webdis    %5sx   target <= 1.00x   %s\n' "$r" "$(verdict "$r" "<=" 1.0)"
        r=$(ratio "${M[kvstore.set.p99]}" "${M[webdis.set.p99]}")
        printf '  /set p99    vs webdis    %5sx   target <= 1.00x   %s\n' "$r" "$(verdict "$r" "<=" 1.0)"
        r=$(ratio "${M[kvstore.get.rps]}" "${M[mhd.get.rps]}")
        printf '  /get req/s  vs bare MHD  %5sx   target >= 0.60x   %s\n' "$r" "$(verdict "$r" ">=" 0.6)"
        r=$(ratio "${M[kvstore.set.rps]}" "${M[mhd.set.rps]}")
        printf '  /set req/s  vs bare MHD  %5sx   (no target)\n' "$r"
        r=$(ratio "${M[webdis.get.rps]}" "${M[mhd.get.rps]}")
        printf '  (webdis /get vs bare MHD %5sx)\n' "$r"
        has_route setif && write_section "conditional create" setif /set?ifVersion=0 SETNX 0.90
        if has_route mget; then
            echo
            printf '%-20s %11s %9s %9s %9s\n' "10 keys per read" "req/s" "keys/s" "p50 ms" "p99 ms"
            for target in kvstore webdis; do
                printf '%-20s %11.0f %9.0f %9.3f %9.3f\n' "${LABEL[$target]}" "${M[$target.mget.rps]}" \
                    "$(awk -v r="${M[$target.mget.rps]}" 'BEGIN{print r*10}')" \
                    "$(awk -v u="${M[$target.mget.p50]}" 'BEGIN{print u/1000}')" \
                    "$(awk -v u="${M[$target.mget.p99]}" 'BEGIN{print u/1000}')"
            done
            r=$(ratio "${M[kvstore.mget.rps]}" "${M[webdis.mget.rps]}")
            printf '  /mget keys/s vs MGET      %5sx   target >= 1.50x   %s\n' "$r" "$(verdict "$r" ">=" 1.5)"
        fi
        has_route tx && write_section "2 keys if absent" tx "/tx req/s" EVAL 0.33
    } | tee -a "$SUMMARY"
    TOTAL_ERRORS=0
    for target in "${TARGETS[@]}"; do
        for route in "${ROUTES[@]}"; do
            measured "$target" "$route" || continue
            TOTAL_ERRORS=$((TOTAL_ERRORS + ${M[$target.$route.err]}))
        done
    done
}

# --- CPU accounting and profile (perf) -----------------------------------------

# Per request under /get: CPU time and context switches (a clean pass), then
# the syscalls that show where the time goes (a second pass: tracepoints
# slow syscall-heavy servers down, so they never touch the CPU figures).
# docs/benchmarks.md compares gateway designs by exactly these.
SYSCALLS=(epoll_wait epoll_ctl poll write read sendmsg sendto recvfrom)
PERF_WINDOW=5

syscall_events() {
    local events='' call
    for call in "${SYSCALLS[@]}"; do events+=${events:+,}syscalls:sys_enter_$call; done
    printf '%s\n' "$events"
}

# per_request CSV REQUESTS [PROCESS]: sums a perf stat --per-thread -x, file
# ("comm-tid,value,unit,event,...") over every thread, or those whose
# process in WORK/threads.map starts with PROCESS, and prints it per request.
per_request() {
    awk -F, -v n="$2" -v want="${3:-}" '
        NR == FNR { split($0, f, " "); split(f[2], p, "/"); proc[f[1]] = p[1]; next }
        { tid = $1; sub(/.*-/, "", tid) }
        want != "" && index(proc[tid], want) != 1 { next }
        $2 !~ /^[0-9.]+$/ { next }
        $4 == "task-clock" { ms += $2; cpu = 1 } $4 == "context-switches" { cs += $2 }
        $4 ~ /^syscalls:sys_enter_/ { e = $4; sub(/^syscalls:sys_enter_/, "", e); if (!(e in c)) order[++k] = e; c[e] += $2 }
        END { if (n <= 0) exit
              if (cpu) printf "%6.1f us CPU, %4.2f context switches", ms * 1000 / n, cs / n
              for (i = 1; i <= k; i++) printf "%s%s %.2f", (i == 1 ? "" : ", "), order[i], c[order[i]] / n
              printf "\n" }' "$WORK/threads.map" "$1"
}

# perf_pass TARGET EVENTS CSV: perf stat per thread over TARGET's servers for
# PERF_WINDOW seconds inside a /get run. Prints the requests in the window.
perf_pass() {
    local target=$1 line
    run_wrk "$target" get "$((PERF_WINDOW + 2))" "$3.wrk" >"$3.line" &
    local wrk_pid=$!
    PIDS+=("$wrk_pid")
    sleep 1
    perf stat --per-thread -x, -e "$2" -p "$(printf '%s' "${PIDS_OF[$target]}" | tr ' ' ',')" \
        -- sleep "$PERF_WINDOW" 2>"$3"
    wait "$wrk_pid"
    line=$(cat "$3.line")
    awk -v r="$(field "$line" rps)" -v w="$PERF_WINDOW" 'BEGIN { print r * w }'
}

cpu_per_request() {
    local target=$1 cpu calls n_cpu n_calls part
    check_alive "$target"
    thread_names "$target" >"$WORK/threads.map"
    cpu=$WORK/perfstat-cpu-$target.csv
    calls=$WORK/perfstat-syscalls-$target.csv
    n_cpu=$(perf_pass "$target" task-clock,context-switches "$cpu")
    n_calls=$(perf_pass "$target" "$(syscall_events)" "$calls")
    printf '  %s (%.0f req/s):\n' "${LABEL[$target]}" "$(awk -v n="$n_cpu" -v w="$PERF_WINDOW" 'BEGIN { print n / w }')"
    for part in "" gateway node-; do
        [ -z "$part" ] || [ "$target" = kvstore ] || continue
        printf '    %-9s %s\n' "${part:-all}" "$(per_request "$cpu" "$n_cpu" "$part")"
        [ "$DO_SYSCALLS" = 1 ] && printf '    %-9s syscalls: %s\n' "" "$(per_request "$calls" "$n_calls" "$part")"
    done
}

# thread_names TARGET: names every thread of TARGET's processes
# "tid process/thread" (perf sorts by thread id), so figures can be read per
# process.
thread_names() {
    local pid name tid i=0
    for pid in ${PIDS_OF[$1]}; do
        name=$(tr -d '\0' <"/proc/$pid/comm" 2>/dev/null)
        [ "$pid" = "$GATEWAY_PID" ] && name=gateway
        case " $NODE_PIDS " in *" $pid "*) i=$((i + 1)) name=node-$i ;; esac
        for tid in /proc/"$pid"/task/*; do
            printf '%s %s/%s\n' "${tid##*/}" "$name" "$(cat "$tid/comm" 2>/dev/null)"
        done
    done
}

profile_kvstore() {
    local out=$WORK/perf-kvstore-get
    check_alive kvstore
    thread_names kvstore >"$out-threads.map"
    run_wrk kvstore get 8 "$WORK/profile-wrk.txt" >/dev/null &
    local wrk_pid=$!
    PIDS+=("$wrk_pid")
    sleep 1
    perf record -F 1999 -g -p "$(printf '%s' "${PIDS_OF[kvstore]}" | tr ' ' ',')" -o "$out.data" \
        -- sleep 5 >/dev/null 2>&1
    wait "$wrk_pid"
    # By thread, named by process: "  12.3%  node-1/ZMQbg/IO/0".
    perf report -i "$out.data" --no-children --sort pid --stdio 2>/dev/null |
        awk 'NR == FNR { name[$1] = $2; next }
             /^ +[0-9.]+%/ { split($2, t, ":"); n = (t[1] in name) ? name[t[1]] : $2; s[n] += $1 }
             END { for (n in s) printf "%7.2f%%  %s\n", s[n], n }' "$out-threads.map" - |
        sort -rn | head -12 >"$out-threads.txt"
    # Kernel time by system call (inclusive), then the hottest user-space code.
    # A syscall's entry symbol varies (__x64_sys_X, __sys_X, ksys_X): take the
    # largest inclusive share among them.
    perf report -i "$out.data" --children --sort sym --stdio -g none 2>/dev/null |
        awk '/^ +[0-9.]+%/ && $3 == "[k]" { name = $4
                 if (name == "schedule") { s[name] = $1 + 0; next }
                 if (!sub(/^(__x64_sys_|__sys_|ksys_|__do_sys_)/, "", name)) next
                 if ($1 + 0 > s[name]) s[name] = $1 + 0 }
             END { for (n in s) if (s[n] >= 0.1) printf "%.2f%% %s\n", s[n], n }' |
        sort -rn | head -12 >"$out-syscalls.txt"
    perf report -i "$out.data" --no-children --sort comm,dso,sym --stdio -g none 2>/dev/null |
        grep -E '^ +[0-9]' | grep -v '\[k\]' | head -12 >"$out-user.txt"
    {
        echo
        echo "Profile of the cluster under /get (perf record -g, 5 s; data: $out.data)"
        echo "  CPU by thread (process/thread):"
        sed 's/^/    /' "$out-threads.txt"
        echo "  kernel time by system call (inclusive; schedule = context switches):"
        awk '{ printf "    %7s  %s\n", $1, $NF }' "$out-syscalls.txt"
        echo "  hottest user-space symbols (self time):"
        awk '{ printf "    %7s  %-12s %s\n", $1, $2, $NF }' "$out-user.txt"
    } | tee -a "$SUMMARY"
}

perf_section() {
    DO_SYSCALLS=0
    perf stat -e syscalls:sys_enter_poll -- true >/dev/null 2>&1 && DO_SYSCALLS=1
    {
        echo
        echo "Per request under /get, perf stat on the server processes (all; for kvstore also the"
        echo "gateway and the nodes, node- = the 3 nodes together; syscalls = calls per request):"
    } | tee -a "$SUMMARY"
    local target
    for target in "${TARGETS[@]}"; do cpu_per_request "$target" | tee -a "$SUMMARY"; done
    profile_kvstore
}

# --- ZeroMQ level ------------------------------------------------------------

# kv-zstress from 1 to 3 nodes. The nodes are unpinned for it: pinned to one
# CPU they could not scale at all; on 2 CPUs they, the client and ZeroMQ's
# I/O threads share 2 cores, so 3 nodes cannot reach 3x.
zstress_section() {
    local pid
    for pid in $NODE_PIDS; do taskset -a -p -c "0-$(($(nproc) - 1))" "$pid" >/dev/null; done
    {
        echo
        echo "kv-zstress (ZeroMQ straight to the nodes, no HTTP; nodes and client unpinned):"
    } | tee -a "$SUMMARY"
    "$ZSTRESS_BIN" --coordinator "$COORD_EP" --scale 1 --mix set=100 --seed 11 \
        2>/dev/null | sed 's/^/  /' | tee -a "$SUMMARY"
    "$ZSTRESS_BIN" --coordinator "$COORD_EP" --scale 1 --mix get=100 --preload "$KEYS" --seed 12 \
        2>/dev/null | sed 's/^/  /' | tee -a "$SUMMARY"
}

# --- main ----------------------------------------------------------------------

preflight
say "load $(cut -d' ' -f1-3 /proc/loadavg) at start; results and logs in $WORK"
start_cluster
start_webdis
start_mhd
preload
measure
report
[ "$DO_PERF" = 1 ] && perf_section
[ "$DO_ZSTRESS" = 1 ] && zstress_section
echo | tee -a "$SUMMARY"
echo "load $(cut -d' ' -f1-3 /proc/loadavg) at the end (other work on this machine adds noise)" |
    tee -a "$SUMMARY"
[ "$TOTAL_ERRORS" -eq 0 ] || die "$TOTAL_ERRORS requests failed during the measurements"
exit 0
