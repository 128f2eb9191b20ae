#!/usr/bin/env bash
# readme-check.sh: runs the README's own commands, as a user would type them,
# so the README cannot drift from what works.
#
# The README marks the blocks it promises work with an HTML comment right
# above them (invisible when rendered):
#
#   <!-- readme-check: quickstart -->   the Quick start: each line is run as
#                                       written from the repository root;
#                                       `make run` (which stays in the
#                                       foreground until Ctrl-C) is started in
#                                       its own session, checked, then sent
#                                       SIGINT as Ctrl-C would
#   <!-- readme-check: examples -->     the curl lines at the top: run while
#                                       `make run` serves; each output must
#                                       equal the comment after its `#`
#   <!-- readme-check: test -->         the test command, run as written
#
# Usage: scripts/readme-check.sh quickstart | test | sudo-user | show NAME
#   sudo-user   (root only) installs sudo, makes a throw-away user allowed to
#               use it, and runs the Quick start's dependency line as that
#               user, so the "user with sudo" path is exercised too (run it
#               after quickstart: the root-without-sudo path comes first).
# Environment: KV_README_START_TIMEOUT [300] seconds for `make run` to answer
# (it builds first), KV_README_STOP_TIMEOUT [20] seconds for it to stop.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 2
README=README.md
START_TIMEOUT=${KV_README_START_TIMEOUT:-300}
STOP_TIMEOUT=${KV_README_STOP_TIMEOUT:-20}
URL=http://127.0.0.1:8080
LOG_DIR=${CI_LOG_DIR:-build/ci}

say() { printf '[readme-check] %s\n' "$*"; }
fail() {
    say "FAILED: $*"
    exit 1
}

# extract NAME: prints the lines of the fenced block that follows the
# `<!-- readme-check: NAME` marker (without the fences). Fails when the
# marker or its block is missing, so renaming a marker cannot silently skip
# a check.
extract() {
    local name=$1 out
    out=$(awk -v name="$name" '
        index($0, "<!-- readme-check: " name) == 1 { armed = 1; next }
        armed && /^```/ && !inside { inside = 1; next }
        inside && /^```/ { found = 1; exit }
        inside { print }
        END { if (!found) exit 1 }' "$README") || fail "no '$name' block in $README"
    [ -n "$out" ] || fail "the '$name' block in $README is empty"
    printf '%s\n' "$out"
}

# The command part of a README line: everything before a ' # ' comment.
command_of() { printf '%s' "$1" | sed -e 's/[[:space:]]#.*$//' -e 's/[[:space:]]*$//'; }
# The comment of a README line, trimmed.
comment_of() { printf '%s' "$1" | sed -n 's/^[^#]*#[[:space:]]*//p' | sed 's/[[:space:]]*$//'; }

RUN_PID=""
# Stops `make run` the way Ctrl-C in its terminal would: SIGINT to its whole
# process group, then checks that every process it started is gone.
stop_run() {
    [ -n "$RUN_PID" ] || return 0
    local pgid=$RUN_PID deadline=$((SECONDS + STOP_TIMEOUT))
    RUN_PID=""
    kill -INT -- "-$pgid" 2>/dev/null
    while kill -0 -- "-$pgid" 2>/dev/null; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            kill -KILL -- "-$pgid" 2>/dev/null
            fail "make run did not stop within ${STOP_TIMEOUT}s of Ctrl-C"
        fi
        sleep 0.2
    done
    # Anything still in the session (a process that left the group) is an
    # orphan; other clusters on this machine are not ours to judge.
    if pgrep -s "$pgid" >/dev/null; then
        pgrep -a -s "$pgid"
        fail "processes left behind after Ctrl-C"
    fi
    if (exec 3<>/dev/tcp/127.0.0.1/8080) 2>/dev/null; then
        fail "port 8080 still answers after Ctrl-C"
    fi
    say "make run stopped on Ctrl-C: no process left, port 8080 free"
}

# Starts a `make run`-style line in its own session (so SIGINT reaches its
# whole group, as from a terminal) and waits for /healthcheck.
start_run() {
    local line=$1 deadline=$((SECONDS + START_TIMEOUT))
    mkdir -p "$LOG_DIR"
    setsid bash -c "$line" >"$LOG_DIR/readme-make-run.log" 2>&1 &
    RUN_PID=$!
    trap stop_run EXIT
    say "started '$line' (pid $RUN_PID, log $LOG_DIR/readme-make-run.log)"
    until curl -fsS -o /dev/null "$URL/healthcheck" 2>/dev/null; do
        if ! kill -0 "$RUN_PID" 2>/dev/null; then
            tail -n 30 "$LOG_DIR/readme-make-run.log"
            fail "'$line' exited before the cluster answered"
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            tail -n 30 "$LOG_DIR/readme-make-run.log"
            fail "no healthy cluster on $URL within ${START_TIMEOUT}s"
        fi
        sleep 0.5
    done
    say "cluster healthy on $URL"
}

# Runs the examples block: each line's output must equal its comment.
check_examples() {
    local line cmd want got n=0
    while IFS= read -r line; do
        [ -n "$line" ] || continue
        cmd=$(command_of "$line")
        want=$(comment_of "$line")
        got=$(bash -c "$cmd") || fail "'$cmd' exited $?"
        [ "$got" = "$want" ] || fail "'$cmd' printed '$got', the README says '$want'"
        say "ok: $cmd -> $got"
        n=$((n + 1))
    done < <(extract examples)
    say "$n example commands print what the README says"
}

# Runs each command of block $1 as written; a `make run` line (which stays
# in the foreground until Ctrl-C) is started, checked with the examples,
# then stopped as Ctrl-C would.
run_block() {
    local line cmd
    while IFS= read -r line; do
        cmd=$(command_of "$line")
        [ -n "$cmd" ] || continue
        case "$cmd" in
        "make run" | "make run "*)
            start_run "$cmd"
            check_examples
            stop_run
            ;;
        *)
            say "running: $cmd"
            bash -c "$cmd" || fail "'$cmd' exited $?"
            ;;
        esac
    done < <(extract "$1")
    say "$1: every command works as written"
}

# The Quick start's dependency line as a user with sudo (the README promises
# both). A fresh throw-away user with password-less sudo runs it on a copy of
# the scripts it needs; KV_DEPS_FORCE_UPDATE makes the script reach apt-get
# (through sudo) even though everything is installed by now.
sudo_user() {
    [ "$(id -u)" -eq 0 ] || fail "sudo-user needs root"
    local user=kvreadme line cmd dir
    command -v sudo >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq sudo >/dev/null ||
        fail "cannot install sudo"
    id "$user" >/dev/null 2>&1 || useradd -m "$user" || fail "cannot add user $user"
    printf '%s ALL=(ALL) NOPASSWD:ALL\n' "$user" >/etc/sudoers.d/kvreadme
    chmod 0440 /etc/sudoers.d/kvreadme
    dir=$(mktemp -d)
    cp -r scripts "$dir/" && chown -R "$user" "$dir"
    line=$(extract quickstart | head -n 1)
    cmd=$(command_of "$line")
    say "running as $user (not root, with sudo): $cmd"
    su "$user" -c "cd '$dir' && KV_DEPS_FORCE_UPDATE=1 $cmd" || fail "'$cmd' as $user exited $?"
    rm -rf "$dir" /etc/sudoers.d/kvreadme
    userdel -r "$user" >/dev/null 2>&1
    say "sudo-user: the dependency line works for a user with sudo"
}

case "${1:-}" in
quickstart) run_block quickstart ;;
test) run_block test ;;
sudo-user) sudo_user ;;
show) extract "${2:?block name}" ;;
*)
    echo "usage: $0 quickstart | test | sudo-user | show NAME" >&2
    exit 2
    ;;
esac
