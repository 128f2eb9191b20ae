# procs.sh: the processes a benchmark script starts, and their end.
# Sourced by tools/bench/bench.sh and tools/bench/mem.sh, which define first:
#   WORK       the run folder (logs go to WORK/NAME.log)
#   BUILD_DIR  where the kv-* executables are
#   HOST       the loopback address servers listen on
#   say, die   their messages
# and may set START_WRAP (an array: a prefix for every server, e.g. taskset)
# and define stop_hook (run first by stop_all, to add pids to PIDS).
# shellcheck shell=bash

PIDS=()
NAMES=()
START_WRAP=()

# start NAME CMD...: runs CMD (behind START_WRAP) in the background, output
# to WORK/NAME.log; its pid goes to PIDS.
start() {
    local name=$1
    shift
    "${START_WRAP[@]}" "$@" >"$WORK/$name.log" 2>&1 &
    PIDS+=($!)
    NAMES+=("$name")
}

STOPPED=0
# Stops every process started: SIGINT (not TERM: a node would drain its
# partitions first), then SIGKILL after 5 s. Runs on exit, Ctrl-C included.
# shellcheck disable=SC2317 # invoked by trap
stop_all() {
    [ "$STOPPED" -eq 1 ] && return
    STOPPED=1
    trap '' INT TERM
    declare -F stop_hook >/dev/null && stop_hook
    local pid alive=() i
    for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive+=("$pid"); done
    if [ "${#alive[@]}" -gt 0 ]; then
        kill -INT "${alive[@]}" 2>/dev/null
        for ((i = 0; i < 50; i++)); do
            alive=()
            for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive+=("$pid"); done
            [ "${#alive[@]}" -eq 0 ] && break
            sleep 0.1
        done
        [ "${#alive[@]}" -gt 0 ] && kill -KILL "${alive[@]}" 2>/dev/null
    fi
    wait 2>/dev/null
    say "stopped every process this run started; logs in $WORK"
}
trap stop_all EXIT
trap 'echo; stop_all; exit 130' INT TERM

# True if something accepts connections on HOST:$1.
port_busy() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

# wait_ok NAME SECONDS CMD...: polls CMD until it succeeds while NAME's
# process (the last one started) stays alive.
wait_ok() {
    local name=$1 seconds=$2 pid=${PIDS[-1]}
    shift 2
    local deadline=$((SECONDS + seconds))
    while [ "$SECONDS" -lt "$deadline" ]; do
        "$@" >/dev/null 2>&1 && return 0
        kill -0 "$pid" 2>/dev/null || die "$name exited during startup; see $WORK/$name.log"
        sleep 0.2
    done
    die "$name not ready after ${seconds}s; see $WORK/$name.log"
}

# binary NAME SUBDIR: the path of executable NAME in the build tree.
binary() {
    local dir
    for dir in "$BUILD_DIR" "$BUILD_DIR/bin" "$BUILD_DIR/$2"; do
        [ -x "$dir/$1" ] && printf '%s\n' "$dir/$1" && return 0
    done
    die "$1 not found under $BUILD_DIR (run make first)"
}
