#!/usr/bin/env bash
# ab.sh: `make bench` as an A/B between two revisions, in one sitting.
#
#   tools/bench/ab.sh BASE [CANDIDATE]      (CANDIDATE defaults to the work tree)
#
# Builds BASE (any git revision) in a temporary worktree, then runs this
# tree's tools/bench/bench.sh alternately against BASE's binaries and
# CANDIDATE's (base, candidate, base, candidate, ...), KV_AB_ROUNDS rounds of
# one repetition each, and prints the medians of each side and the change of
# the candidate against the base. The same bench.sh drives both sides, so only
# the binaries differ; alternating spreads the machine's noise over both.
# webdis and bare MHD run in every round too: their figures show how much the
# machine itself drifted during the sitting.
#
# A figure is flagged when the candidate is worse than the base by more than
# KV_AB_TOLERANCE percent (lower req/s, higher latency).
#
# Settings (environment, defaults in brackets):
#   KV_AB_ROUNDS [3]        rounds (each side runs this many times)
#   KV_AB_TOLERANCE [5]     percent
#   KV_BENCH_*              passed to bench.sh (KV_BENCH_PERF and
#                           KV_BENCH_ZSTRESS default to 0 here,
#                           KV_BENCH_ROUTES to "get set")
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT" || exit 2

BASE=${1:?usage: tools/bench/ab.sh BASE [CANDIDATE]}
CANDIDATE=${2:-}
ROUNDS=${KV_AB_ROUNDS:-3}
TOLERANCE=${KV_AB_TOLERANCE:-5}
# Only /get and /set: the routes every revision serves, and the ones compared.
export KV_BENCH_PERF=${KV_BENCH_PERF:-0} KV_BENCH_ZSTRESS=${KV_BENCH_ZSTRESS:-0} KV_BENCH_REPS=1
export KV_BENCH_ROUTES=${KV_BENCH_ROUTES:-get set}

WORK=$(mktemp -d /tmp/kv-ab.XXXXXX)
say() { printf '[ab] %s\n' "$*" >&2; }
die() {
    say "error: $*"
    exit 1
}

cleanup() {
    local tree
    for tree in "$WORK"/tree-*; do
        [ -d "$tree" ] && git worktree remove --force "$tree" >/dev/null 2>&1
    done
}
trap cleanup EXIT

# build_rev NAME REV: a release build of REV in a worktree; prints its build dir.
build_rev() {
    local tree=$WORK/tree-$1
    git worktree add --detach "$tree" "$2" >/dev/null 2>&1 || die "no such revision: $2"
    say "building $1 ($(git -C "$tree" log --oneline -1 | cut -c1-60))"
    cmake -S "$tree" -B "$tree/build" -DCMAKE_BUILD_TYPE=Release >"$WORK/$1-cmake.log" 2>&1 &&
        cmake --build "$tree/build" -j "$(nproc)" >"$WORK/$1-build.log" 2>&1 ||
        die "build of $2 failed: $WORK/$1-build.log"
    printf '%s\n' "$tree/build"
}

BASE_DIR=$(build_rev base "$BASE") || exit 1
if [ -n "$CANDIDATE" ]; then
    CAND_DIR=$(build_rev candidate "$CANDIDATE") || exit 1
else
    say "building candidate (this work tree)"
    cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release >"$WORK/candidate-cmake.log" 2>&1 &&
        cmake --build build/release -j "$(nproc)" >"$WORK/candidate-build.log" 2>&1 ||
        die "build failed: $WORK/candidate-build.log"
    CAND_DIR=$ROOT/build/release
fi

# One line per measurement: SIDE TARGET ROUTE RPS P50_US P99_US.
ALL=$WORK/all.txt
: >"$ALL"
for ((round = 1; round <= ROUNDS; round++)); do
    for side in base candidate; do
        dir=$BASE_DIR
        [ "$side" = candidate ] && dir=$CAND_DIR
        say "round $round/$ROUNDS: $side"
        KV_BENCH_BUILD_DIR=$dir tools/bench/bench.sh >"$WORK/$side-$round.out" 2>"$WORK/$side-$round.err" ||
            die "bench.sh failed ($side, round $round): $WORK/$side-$round.err"
        results=$(sed -n 's/.*results and logs in \(.*\)$/\1/p' "$WORK/$side-$round.err" | head -1)
        [ -f "$results/results.txt" ] || die "no results from bench.sh: $WORK/$side-$round.err"
        awk -v s="$side" '{ print s, $1, $2, $4, $5, $6 }' "$results/results.txt" >>"$ALL"
    done
done

# median SIDE TARGET ROUTE COLUMN (4 rps, 5 p50, 6 p99)
median() {
    awk -v s="$1" -v t="$2" -v r="$3" -v c="$4" '$1 == s && $2 == t && $3 == r { print $c }' "$ALL" |
        sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print 0; else if (NR % 2) print v[(NR + 1) / 2];
                        else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

echo
echo "A/B: base $(git log --oneline -1 "$BASE" | cut -c1-70)"
echo "     candidate ${CANDIDATE:-work tree at $(git log --oneline -1 HEAD | cut -c1-58)}"
echo "     $ROUNDS alternated rounds, medians; $(date -u '+%Y-%m-%d %H:%M UTC'), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo
printf '%-8s %-5s %-8s %12s %12s %9s\n' target route figure base candidate change
WORSE=0
for target in kvstore webdis mhd; do
    for route in get set; do
        for col in 4:req/s 5:p50_ms 6:p99_ms; do
            n=${col%%:*} name=${col#*:}
            b=$(median base "$target" "$route" "$n")
            c=$(median candidate "$target" "$route" "$n")
            line=$(awk -v b="$b" -v c="$c" -v n="$n" -v tol="$TOLERANCE" 'BEGIN {
                scale = (n == 4 ? 1 : 1000)
                ch = (b > 0 ? (c - b) * 100 / b : 0)
                worse = (n == 4 ? -ch : ch)
                printf "%12.3f %12.3f %+8.1f%% %s", b / scale, c / scale, ch, (worse > tol ? "WORSE" : "")
            }')
            printf '%-8s %-5s %-8s %s\n' "$target" "$route" "$name" "$line"
            [ "$target" = kvstore ] && [[ "$line" == *WORSE ]] && WORSE=$((WORSE + 1))
        done
    done
done
echo
echo "raw figures: $ALL"
[ "$WORSE" -eq 0 ] || {
    say "$WORSE kvstore figure(s) worse than the base by more than $TOLERANCE %"
    exit 1
}
