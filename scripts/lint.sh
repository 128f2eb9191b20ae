#!/usr/bin/env bash
# lint.sh: the three static checks every change must pass, run in order and
# summarised at the end. Exits non-zero if any tool has a finding.
#
#   format    clang-format --dry-run -Werror on every project .c/.h
#   tidy      clang-tidy (.clang-tidy) on every project .c, with the flags
#             from build/release/compile_commands.json, one process per core
#   cppcheck  cppcheck over the same compile database
#
# Usage: scripts/lint.sh [format] [tidy] [cppcheck]   (default: all three)
#
# Project files are the tracked and untracked (not ignored) .c/.h files under
# the source folders below; build/ is never linted. Environment:
#   KV_LINT_BUILD_DIR  compile database folder (default build/release)
#   KV_LINT_JOBS       parallel clang-tidy processes (default nproc)
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 2

SRC_DIRS=(common proto node coordinator gateway tests tools)
BUILD_DIR=${KV_LINT_BUILD_DIR:-build/release}
JOBS=${KV_LINT_JOBS:-$(nproc 2>/dev/null || echo 2)}
OUT_DIR=$BUILD_DIR/lint

if [ -t 1 ]; then
    BOLD=$'\e[1m' RED=$'\e[31m' GREEN=$'\e[32m' RESET=$'\e[0m'
else
    BOLD='' RED='' GREEN='' RESET=''
fi

header() { printf '\n%s==> %s%s\n' "$BOLD" "$*" "$RESET"; }

# Prints the project's .c/.h files (pattern $1: '*.c' or '*.[ch]'), one per line.
project_files() {
    local pattern=$1 dirs=() d
    for d in "${SRC_DIRS[@]}"; do [ -d "$d" ] && dirs+=("$d"); done
    [ "${#dirs[@]}" -gt 0 ] || return 0
    if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        git ls-files --cached --others --exclude-standard -- "${dirs[@]}" |
            grep -E "$( [ "$pattern" = '*.c' ] && echo '\.c$' || echo '\.[ch]$')" |
            grep -v '^build/' |
            while IFS= read -r f; do [ -f "$f" ] && printf '%s\n' "$f"; done
    else
        find "${dirs[@]}" -type f -name "$pattern" -not -path 'build/*'
    fi | sort -u
}

declare -A RESULT=()
declare -A DETAIL=()

# --- clang-format ------------------------------------------------------------

run_format() {
    header "clang-format ($(clang-format --version | grep -o 'version [0-9.]*'))"
    local files bad=()
    mapfile -t files < <(project_files '*.[ch]')
    if [ "${#files[@]}" -eq 0 ]; then
        RESULT[format]=ok DETAIL[format]="no files"
        return 0
    fi
    local f
    for f in "${files[@]}"; do
        clang-format --dry-run -Werror "$f" >/dev/null 2>&1 || bad+=("$f")
    done
    if [ "${#bad[@]}" -eq 0 ]; then
        RESULT[format]=ok DETAIL[format]="${#files[@]} files clean"
        echo "all ${#files[@]} files formatted"
        return 0
    fi
    for f in "${bad[@]}"; do
        echo "${RED}needs formatting:${RESET} $f"
        # A short unified diff shows what clang-format would change.
        clang-format "$f" | diff -u --label "$f" --label "$f (clang-format)" "$f" - | head -40
    done
    RESULT[format]=FAIL
    DETAIL[format]="${#bad[@]} of ${#files[@]} files need formatting (run: make format)"
    return 1
}

# --- compile database ----------------------------------------------------------

# (Re)configures BUILD_DIR once per run so compile_commands.json lists every
# file CMake builds now; a re-run of an existing tree takes about a second.
DB_READY=0
ensure_compile_db() {
    [ "$DB_READY" -eq 1 ] && return 0
    local args=()
    [ -f "$BUILD_DIR/CMakeCache.txt" ] || args=(-DCMAKE_BUILD_TYPE=Release)
    echo "configuring $BUILD_DIR for compile_commands.json"
    if ! cmake -S . -B "$BUILD_DIR" "${args[@]}" >"$OUT_DIR/configure.log" 2>&1; then
        cat "$OUT_DIR/configure.log"
        return 1
    fi
    DB_READY=1
}

# --- clang-tidy ----------------------------------------------------------------

run_tidy() {
    header "clang-tidy ($(clang-tidy --version | grep -o 'version [0-9.]*'), $JOBS jobs)"
    local files
    mapfile -t files < <(project_files '*.c')
    if [ "${#files[@]}" -eq 0 ]; then
        RESULT[tidy]=ok DETAIL[tidy]="no files"
        return 0
    fi
    if ! ensure_compile_db; then
        RESULT[tidy]=FAIL DETAIL[tidy]="cmake configure failed"
        return 1
    fi
    local f missing=0
    for f in "${files[@]}"; do
        if ! grep -q "\"$ROOT/$f\"" "$BUILD_DIR/compile_commands.json"; then
            echo "note: $f is not in compile_commands.json (not built by CMake?); flags are guessed"
            missing=$((missing + 1))
        fi
    done

    local logs=$OUT_DIR/tidy
    rm -rf "$logs" && mkdir -p "$logs"
    # One log per file so parallel output never interleaves. The compile flags
    # are gcc's; -Wno-unknown-warning-option keeps gcc-only -W flags quiet.
    # shellcheck disable=SC2016 # the inner script expands its own $0..$2
    printf '%s\0' "${files[@]}" |
        xargs -0 -P "$JOBS" -I{} sh -c '
            log="$1/$(printf %s "$2" | tr / _).log"
            clang-tidy -p "$0" --quiet --extra-arg=-Wno-unknown-warning-option "$2" >"$log" 2>&1
            echo $? >"$log.rc"' "$BUILD_DIR" "$logs" {}

    local failed_files=0 log rc
    for f in "${files[@]}"; do
        log="$logs/$(printf %s "$f" | tr / _).log"
        rc=$(cat "$log.rc" 2>/dev/null || echo 99)
        if [ "$rc" != 0 ] || grep -qE ': (warning|error):' "$log"; then
            failed_files=$((failed_files + 1))
            echo "${RED}--- $f${RESET}"
            grep -vE '^[0-9]+ (warnings?|errors?) generated\.$|^Suppressed [0-9]+ warnings|^Use -header-filter|^Error while processing' "$log"
        fi
    done

    # The same header finding shows up once per .c that includes it: count it once.
    local findings
    findings=$(cat "$logs"/*.log 2>/dev/null |
        grep -E '^[^ ].*:[0-9]+:[0-9]+: (warning|error):' | sed "s|^$ROOT/||" | sort -u)
    if [ "$failed_files" -eq 0 ]; then
        RESULT[tidy]=ok DETAIL[tidy]="${#files[@]} files clean"
        echo "all ${#files[@]} files clean"
        return 0
    fi
    local n
    n=$(printf '%s\n' "$findings" | grep -c . || true)
    echo
    echo "${BOLD}clang-tidy findings ($n unique):${RESET}"
    printf '%s\n' "$findings"
    echo
    echo "${BOLD}by check:${RESET}"
    printf '%s\n' "$findings" | grep -oE '\[[a-zA-Z0-9.,_-]+\]$' | sort | uniq -c | sort -rn
    RESULT[tidy]=FAIL
    DETAIL[tidy]="$n findings in $failed_files of ${#files[@]} files"
    return 1
}

# --- cppcheck ------------------------------------------------------------------

run_cppcheck() {
    header "cppcheck ($(cppcheck --version))"
    if ! ensure_compile_db; then
        RESULT[cppcheck]=FAIL DETAIL[cppcheck]="cmake configure failed"
        return 1
    fi
    local cache=$OUT_DIR/cppcheck-cache
    mkdir -p "$cache"
    # --project takes each file's -I/-D/-std from the compile database, so
    # what cppcheck parses is what gcc compiles. Suppressions, and why:
    #   missingIncludeSystem  czmq/criterion/libc headers are not analysed
    #   unmatchedSuppression  an inline suppression may outlive its finding
    #   *:/usr/*              never report inside system headers
    #   readdirCalled         recommends readdir_r, which glibc deprecated
    #                         (readdir is thread-safe per DIR stream)
    #   unusedFunction is not enabled (it needs the whole program and misfires
    #   on library code shared by three executables).
    # Criterion's file-scope macros (Test, TestSuite, ...) come from a system
    # header cppcheck does not read, and it stops on them with unknownMacro;
    # parsing criterion's real headers breaks its AST instead. So the tests
    # are analysed with each macro spelled as the plain function it defines.
    local criterion=(
        '-DTestSuite(...)='
        '-DTest(suite,name,...)=void suite##_##name(void)'
        '-DParameterizedTestParameters(suite,name)=struct criterion_test_params suite##_##name##_params(void)'
        '-DParameterizedTest(param,suite,name,...)=void suite##_##name(param)'
    )
    local out=$OUT_DIR/cppcheck.log
    cppcheck --project="$BUILD_DIR/compile_commands.json" \
        --cppcheck-build-dir="$cache" \
        --enable=warning,performance,portability \
        --std=c11 --library=posix \
        --inline-suppr \
        --suppress=missingIncludeSystem \
        --suppress=unmatchedSuppression \
        --suppress='*:/usr/*' \
        --suppress=readdirCalled \
        "${criterion[@]}" \
        -i "$ROOT/build" \
        -j "$JOBS" -q \
        --error-exitcode=1 \
        --template='{file}:{line}:{column}: {severity}: {message} [{id}]' \
        >"$out" 2>&1
    local rc=$?
    sed "s|^$ROOT/||" "$out"
    local n
    n=$(grep -cE '^[^ ].*:[0-9]+:[0-9]+: [a-z]+: ' "$out" || true)
    if [ "$rc" -eq 0 ] && [ "$n" -eq 0 ]; then
        RESULT[cppcheck]=ok DETAIL[cppcheck]="no findings"
        echo "no findings"
        return 0
    fi
    RESULT[cppcheck]=FAIL
    DETAIL[cppcheck]="$n findings (exit $rc)"
    return 1
}

# --- main ----------------------------------------------------------------------

steps=("$@")
[ "${#steps[@]}" -gt 0 ] || steps=(format tidy cppcheck)
mkdir -p "$OUT_DIR"

status=0
for step in "${steps[@]}"; do
    case $step in
    format) run_format || status=1 ;;
    tidy) run_tidy || status=1 ;;
    cppcheck) run_cppcheck || status=1 ;;
    *)
        echo "lint.sh: unknown step '$step' (format, tidy, cppcheck)" >&2
        exit 2
        ;;
    esac
done

header "lint summary"
for step in "${steps[@]}"; do
    if [ "${RESULT[$step]}" = ok ]; then
        printf '  %-9s %sok%s    %s\n' "$step" "$GREEN" "$RESET" "${DETAIL[$step]}"
    else
        printf '  %-9s %sFAIL%s  %s\n' "$step" "$RED" "$RESET" "${DETAIL[$step]}"
    fi
done
exit "$status"
