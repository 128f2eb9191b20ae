#!/bin/sh
# build-stress.sh SRC BUILD OUT: puts kv-stress into OUT/bin for the tests
# image, or explains in OUT/share/kvstore/kv-stress.unavailable why it could
# not (the tests image's `stress` command prints that reason).
#
# The load tools live in tools/ (tools/stress: kv-stress). Where to find the
# executable, in order:
#   1. BUILD already has it: the root CMakeLists.txt builds tools/.
#   2. tools/CMakeLists.txt or tools/stress/CMakeLists.txt builds it alone.
#   3. tools/stress/Makefile builds it.
# A tree without tools/stress, or one these steps cannot build, still gives a
# tests image: the API contract does not need kv-stress.
set -u
SRC=$1 BUILD=$2 OUT=$3
mkdir -p "$OUT/bin" "$OUT/share/kvstore"
LOG=$OUT/share/kvstore/kv-stress.build.log
: >"$LOG"

found() { find "$@" -type f -name kv-stress -perm -u+x 2>/dev/null | head -n 1; }

unavailable() {
    echo "$1" >"$OUT/share/kvstore/kv-stress.unavailable"
    echo "build-stress: kv-stress unavailable: $1" >&2
    exit 0
}

[ -d "$SRC/tools/stress" ] || unavailable "tools/stress is not in the sources this image was built from"

exe=$(found "$BUILD")
if [ -z "$exe" ]; then
    for dir in "$SRC/tools" "$SRC/tools/stress"; do
        [ -f "$dir/CMakeLists.txt" ] || continue
        echo "build-stress: cmake -S $dir" >&2
        if cmake -S "$dir" -B /build-tools -DCMAKE_BUILD_TYPE=Release >>"$LOG" 2>&1 &&
            cmake --build /build-tools -j "$(nproc)" >>"$LOG" 2>&1; then
            exe=$(found /build-tools)
            [ -n "$exe" ] && break
        fi
    done
fi
if [ -z "$exe" ] && [ -f "$SRC/tools/stress/Makefile" ]; then
    echo "build-stress: make -C tools/stress" >&2
    make -C "$SRC/tools/stress" -j "$(nproc)" >>"$LOG" 2>&1 && exe=$(found "$SRC/tools/stress")
fi
if [ -z "$exe" ]; then
    tail -n 20 "$LOG" >&2
    unavailable "tools/stress exists but no build produced kv-stress (log: /usr/local/share/kvstore/kv-stress.build.log)"
fi
strip -o "$OUT/bin/kv-stress" "$exe"
echo "build-stress: kv-stress from $exe" >&2
