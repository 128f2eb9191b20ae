#!/usr/bin/env bash
# run-local.sh: a whole cluster on loopback, in the foreground.
#
# Starts kv-coordinator, KV_NODES kv-node processes and kv-gateway, prefixes
# every output line with the process name, and prints the URL once the
# gateway's /healthcheck answers 200. Ctrl-C (or SIGTERM) sends SIGINT to
# every process, waits up to KV_STOP_TIMEOUT seconds, then SIGKILLs the rest,
# so nothing is orphaned and the ports are free when the script returns. If
# any process exits on its own, the others are stopped the same way.
#
# Binaries come from KV_BUILD_DIR (default build/release), which is built
# first if a binary is missing. Ports and addresses (defaults in brackets):
#   KV_HOST [127.0.0.1]            interface every socket binds and connects to
#   KV_COORD_PORT [5550]           coordinator ROUTER (registration, requests)
#   KV_COORD_PUB_PORT [5551]       coordinator PUB (routing table)
#   KV_NODES [3]                   number of nodes
#   KV_NODE_BASE_PORT [5601]       node i binds BASE+2(i-1), publishes on the next port
#   KV_MIN_NODES [KV_NODES]        --min-nodes for the coordinator
#   KV_REPLICATION [2]             --replication for the coordinator (copies of each key)
#   KV_HTTP_PORT [8080]            gateway HTTP port
#   KV_START_TIMEOUT [30]          seconds to wait for /healthcheck
#   KV_STOP_TIMEOUT [5]            seconds between SIGINT and SIGKILL
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 2

BUILD_DIR=${KV_BUILD_DIR:-build/release}
HOST=${KV_HOST:-127.0.0.1}
COORD_PORT=${KV_COORD_PORT:-5550}
COORD_PUB_PORT=${KV_COORD_PUB_PORT:-5551}
NODES=${KV_NODES:-3}
NODE_BASE_PORT=${KV_NODE_BASE_PORT:-5601}
MIN_NODES=${KV_MIN_NODES:-$NODES}
REPLICATION=${KV_REPLICATION:-2}
HTTP_PORT=${KV_HTTP_PORT:-8080}
START_TIMEOUT=${KV_START_TIMEOUT:-30}
STOP_TIMEOUT=${KV_STOP_TIMEOUT:-5}

COORD_EP=tcp://$HOST:$COORD_PORT
COORD_PUB_EP=tcp://$HOST:$COORD_PUB_PORT
URL=http://$HOST:$HTTP_PORT

say() { printf '[run-local] %s\n' "$*"; }

# Prints the path of executable $1 in the build tree, wherever CMake put it.
find_binary() {
    local name=$1 dir
    for dir in "$BUILD_DIR" "$BUILD_DIR/bin" "$BUILD_DIR/node" "$BUILD_DIR/coordinator" \
        "$BUILD_DIR/gateway"; do
        if [ -x "$dir/$name" ]; then
            printf '%s\n' "$dir/$name"
            return 0
        fi
    done
    return 1
}

ensure_binaries() {
    local name missing=0
    for name in kv-coordinator kv-node kv-gateway; do
        find_binary "$name" >/dev/null || missing=1
    done
    [ "$missing" -eq 0 ] && return 0
    say "binaries missing in $BUILD_DIR: building"
    if [ ! -f "$BUILD_DIR/CMakeCache.txt" ]; then
        cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release || return 1
    fi
    cmake --build "$BUILD_DIR" -j "$(nproc 2>/dev/null || echo 2)" || return 1
    for name in kv-coordinator kv-node kv-gateway; do
        find_binary "$name" >/dev/null || {
            say "build did not produce $name"
            return 1
        }
    done
}

# True if something already accepts connections on $HOST:$1.
port_busy() {
    (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null
}

check_ports() {
    local port busy=0 i
    local ports=("$COORD_PORT" "$COORD_PUB_PORT" "$HTTP_PORT")
    for ((i = 0; i < NODES; i++)); do
        ports+=($((NODE_BASE_PORT + 2 * i)) $((NODE_BASE_PORT + 2 * i + 1)))
    done
    for port in "${ports[@]}"; do
        if port_busy "$port"; then
            say "port $HOST:$port is already in use"
            busy=1
        fi
    done
    return "$busy"
}

PIDS=()
NAMES=()

# start NAME BINARY ARGS...: runs the binary in the background with its stdout
# and stderr line-buffered and prefixed by NAME. The prefixer ignores INT and
# TERM so the last lines a process prints while shutting down still show.
start() {
    local name=$1 bin=$2
    shift 2
    local prefix
    prefix=$(printf '%-14s| ' "$name")
    # sed -u reads and writes a line at a time (awk may buffer a pipe's input).
    stdbuf -oL -eL "$bin" "$@" \
        > >(trap '' INT TERM; exec sed -u "s/^/$prefix/") 2>&1 &
    PIDS+=($!)
    NAMES+=("$name")
    say "started $name (pid $!): $bin $*"
}

alive_pids() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill -0 "$pid" 2>/dev/null && printf '%s\n' "$pid"
    done
}

STOPPING=0
stop_all() {
    [ "$STOPPING" -eq 1 ] && return
    STOPPING=1
    trap '' INT TERM
    local pids
    mapfile -t pids < <(alive_pids)
    if [ "${#pids[@]}" -gt 0 ]; then
        say "stopping ${#pids[@]} processes (SIGINT: no drain, the whole cluster stops; SIGKILL after ${STOP_TIMEOUT}s)"
        kill -INT "${pids[@]}" 2>/dev/null
        local deadline=$((SECONDS + STOP_TIMEOUT))
        while [ "$SECONDS" -lt "$deadline" ]; do
            mapfile -t pids < <(alive_pids)
            [ "${#pids[@]}" -eq 0 ] && break
            sleep 0.1
        done
        mapfile -t pids < <(alive_pids)
        if [ "${#pids[@]}" -gt 0 ]; then
            local i
            for i in "${!PIDS[@]}"; do
                kill -0 "${PIDS[$i]}" 2>/dev/null && say "${NAMES[$i]} did not stop: SIGKILL"
            done
            kill -KILL "${pids[@]}" 2>/dev/null
        fi
    fi
    wait 2>/dev/null # reap children and the output prefixers
    say "all processes stopped"
}

# shellcheck disable=SC2317 # invoked by trap
on_signal() {
    echo
    stop_all
    exit 130
}

# --- main ----------------------------------------------------------------------

ensure_binaries || exit 1
check_ports || {
    say "stop whatever holds those ports (an earlier run?) or pick others via KV_*_PORT"
    exit 1
}

trap on_signal INT TERM
trap stop_all EXIT

start coordinator "$(find_binary kv-coordinator)" \
    --bind "$COORD_EP" --pub "$COORD_PUB_EP" --min-nodes "$MIN_NODES" --replication "$REPLICATION"
for ((i = 1; i <= NODES; i++)); do
    port=$((NODE_BASE_PORT + 2 * (i - 1)))
    start "node-$i" "$(find_binary kv-node)" --id "node-$i" \
        --bind "tcp://$HOST:$port" --pub "tcp://$HOST:$((port + 1))" --coordinator "$COORD_EP"
done
start gateway "$(find_binary kv-gateway)" --host "$HOST" \
    --port "$HTTP_PORT" --coordinator "$COORD_EP" --coordinator-pub "$COORD_PUB_EP"

# Prints the name of the first process that has exited, if any.
first_dead() {
    local i
    for i in "${!PIDS[@]}"; do
        if ! kill -0 "${PIDS[$i]}" 2>/dev/null; then
            printf '%s\n' "${NAMES[$i]}"
            return 0
        fi
    done
    return 1
}

# Poll /healthcheck until it answers 200 (every node registered and every
# partition owned), watching that nothing died in the meantime.
deadline=$((SECONDS + START_TIMEOUT))
healthy=0
while [ "$SECONDS" -lt "$deadline" ]; do
    if dead=$(first_dead); then
        say "$dead exited during startup"
        exit 1
    fi
    if curl -fsS -o /dev/null --max-time 1 "$URL/healthcheck" 2>/dev/null; then
        healthy=1
        break
    fi
    sleep 0.2
done
if [ "$healthy" -eq 1 ]; then
    say "cluster ready: $URL  (try: curl '$URL/set?k=hello&v=world'; Ctrl-C stops everything)"
else
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$URL/healthcheck" 2>/dev/null)
    say "warning: $URL/healthcheck not healthy after ${START_TIMEOUT}s (last HTTP status: ${code:-none}); still running"
fi

# Run until the coordinator or the gateway exits or a signal arrives; wait
# returns early on a trapped signal, and on_signal takes over from there. A
# node may exit on its own: after /leave (or kill -TERM) it drains and goes.
while :; do
    wait -n "${PIDS[@]}"
    rc=$?
    dead=$(first_dead || echo "a process")
    case "$dead" in
    node-*) say "$dead exited (status $rc); the cluster goes on without it" ;;
    *) break ;;
    esac
    for i in "${!PIDS[@]}"; do [ "${NAMES[$i]}" = "$dead" ] && unset "PIDS[$i]" "NAMES[$i]"; done
done
say "$dead exited (status $rc): stopping the cluster"
stop_all
exit 1
