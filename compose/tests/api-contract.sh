#!/usr/bin/env bash
# api-contract.sh: the HTTP API contract (shared/spec/API.md), checked from
# outside against a running store at $KV_URL: every route, every validation
# error with its precedence, the bulk reads and their pages, the error shape
# and the Content-Type of every answer. Needs bash, curl and jq.
#
# The store must be for this script alone while it runs: it starts and ends
# with /clear. The cluster errors (503 UNAVAILABLE, 504 TIMEOUT, 507
# OUT_OF_MEMORY) need a fault and are checked by scripts/docker-ci.sh, which
# can pause a node; a healthy cluster never answers them.
#
# /join and /leave: a gateway that answers 501 NOT_IMPLEMENTED (live
# membership is not in this version) has those checks skipped, not failed,
# unless KV_CONTRACT_STRICT=1.
#
# Environment:
#   KV_URL               base URL [http://localhost:8080]
#   KV_CONTRACT_STRICT   1: a 501 for /join or /leave fails [0]
#   KV_CONTRACT_VERBOSE  1: print every request [0]
# Ends with "N passed, N failed, N skipped"; exits 1 if anything failed.
set -uo pipefail

URL=${KV_URL:-http://localhost:8080}
URL=${URL%/}
STRICT=${KV_CONTRACT_STRICT:-0}
VERBOSE=${KV_CONTRACT_VERBOSE:-0}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

PASSED=0 FAILED=0 SKIPPED=0
STATUS="" CTYPE="" BODY=""

ok() {
    PASSED=$((PASSED + 1))
    printf 'ok   %s\n' "$1"
}
fail() {
    FAILED=$((FAILED + 1))
    printf 'FAIL %s: %s\n' "$1" "$2"
}
skip() {
    SKIPPED=$((SKIPPED + 1))
    printf 'skip %s: %s\n' "$1" "$2"
}

# request [METHOD] PATH: sends it; sets STATUS, CTYPE, BODY and leaves the
# response headers in $TMP/headers.
request() {
    local method=GET
    if [ $# -eq 2 ]; then
        method=$1
        shift
    fi
    local args=(-sS --max-time 15 -o "$TMP/body" -D "$TMP/headers" -w '%{http_code} %{size_download}')
    if [ "$method" = HEAD ]; then args+=(--head); else args+=(-X "$method"); fi
    [ "$VERBOSE" = 1 ] && printf '  > %s %s\n' "$method" "$1"
    local out
    out=$(curl "${args[@]}" "$URL$1" 2>"$TMP/curl.err") || out="000 0"
    STATUS=${out% *}
    # --head leaves the headers in the body file; size_download is the body.
    [ "${out#* }" = 0 ] && : >"$TMP/body"
    CTYPE=$(tr -d '\r' <"$TMP/headers" | awk -F': *' 'tolower($1) == "content-type" { v = $2 } END { print v }')
    BODY=$(cat "$TMP/body" 2>/dev/null)
}

# header NAME: the value of a response header of the last request.
header() {
    tr -d '\r' <"$TMP/headers" | awk -F': *' -v h="$(echo "$1" | tr '[:upper:]' '[:lower:]')" \
        'tolower($1) == h { sub(/^[^:]*: */, ""); v = $0 } END { print v }'
}

short() { printf '%s' "$BODY" | head -c 200; }

# check_json NAME PATH STATUS JQ: the answer has that status, a JSON body
# with Content-Type application/json, and JQ (a jq filter) is true of it.
check_json() {
    local name=$1 path=$2 want=$3 filter=$4
    request "$path"
    if [ "$STATUS" != "$want" ]; then
        fail "$name" "GET $path: status $STATUS, want $want; body $(short)"
    elif [[ $CTYPE != application/json* ]]; then
        fail "$name" "GET $path: Content-Type '$CTYPE', want application/json"
    elif ! jq -e "$filter" >/dev/null 2>&1 <<<"$BODY"; then
        fail "$name" "GET $path: body $(short) does not satisfy: $filter"
    else
        ok "$name"
    fi
}

# check_error NAME [METHOD] PATH STATUS CODE: an error answer of the contract:
# the status, application/json, {"error": CODE, "message": "..."}.
check_error() {
    local name=$1 method=GET
    shift
    if [ $# -eq 4 ]; then
        method=$1
        shift
    fi
    local path=$1 want=$2 code=$3
    request "$method" "$path"
    if [ "$STATUS" != "$want" ]; then
        fail "$name" "$method ${path:0:120}: status $STATUS, want $want $code; body $(short)"
    elif [[ $CTYPE != application/json* ]]; then
        fail "$name" "$method ${path:0:120}: Content-Type '$CTYPE', want application/json"
    elif ! jq -e --arg c "$code" '.error == $c and (.message | type == "string")' \
        >/dev/null 2>&1 <<<"$BODY"; then
        fail "$name" "$method ${path:0:120}: body $(short), want {\"error\":\"$code\",\"message\":...}"
    else
        ok "$name"
    fi
}

check_success() { check_json "$1" "$2" 200 '. == {"success": true}'; }

# check_value NAME KEY_ENCODED JSON: /get answers 200 with that JSON string.
check_value() {
    check_json "$1" "/get?k=$2" 200 ". == $3"
}

# check_membership NAME PATH STATUS CODE: like check_error, but a 501
# NOT_IMPLEMENTED is a skip unless KV_CONTRACT_STRICT=1.
check_membership() {
    local name=$1 path=$2
    request "$path"
    if [ "$STATUS" = 501 ] && [ "$STRICT" != 1 ] &&
        jq -e '.error == "NOT_IMPLEMENTED"' >/dev/null 2>&1 <<<"$BODY"; then
        skip "$name" "501 NOT_IMPLEMENTED (live membership not in this gateway yet)"
        return
    fi
    if [ "$3" = 200 ]; then check_json "$name" "$path" 200 "$4"; else check_error "$name" "$path" "$3" "$4"; fi
}

# repeat TEXT N: TEXT N times.
repeat() {
    local out="" i
    for ((i = 0; i < $2; i++)); do out+=$1; done
    printf '%s' "$out"
}

# bulk_sorted PATH JQ: runs a bulk read and prints JQ of it, sorted, one line.
bulk_sorted() {
    request "$1"
    jq -c "$2 | sort" <<<"$BODY" 2>/dev/null
}

# pages PATH LIMIT: follows X-Next-Cursor from the first page to the last;
# sets PAGES to "pages entries largest_page" and leaves the entries' keys
# (sorted) in $TMP/paged. Returns 1 on a non-200 page or a runaway loop.
pages() {
    local path=$1 limit=$2 cursor="" n=0 total=0 max=0 sep='?'
    [[ $path == *\?* ]] && sep='&'
    : >"$TMP/paged"
    while :; do
        local target="$path${sep}limit=$limit"
        [ -n "$cursor" ] && target+="&cursor=$(jq -rn --arg c "$cursor" '$c | @uri')"
        request "$target"
        [ "$STATUS" = 200 ] || return 1
        local count
        count=$(jq 'length' <<<"$BODY") || return 1
        jq -r '.[] | if type == "object" then .k else . end' <<<"$BODY" >>"$TMP/paged"
        n=$((n + 1))
        total=$((total + count))
        [ "$count" -gt "$max" ] && max=$count
        cursor=$(header X-Next-Cursor)
        [ -z "$cursor" ] && break
        [ "$n" -gt 1000 ] && return 1
    done
    sort -o "$TMP/paged" "$TMP/paged"
    PAGES="$n $total $max"
}

echo "API contract against $URL"

# --- the cluster answers ---------------------------------------------------------
deadline=$((SECONDS + ${KV_CONTRACT_WAIT:-60}))
until curl -fsS --max-time 2 -o /dev/null "$URL/healthcheck" 2>/dev/null; do
    if [ "$SECONDS" -ge "$deadline" ]; then
        echo "no healthy store at $URL/healthcheck after ${KV_CONTRACT_WAIT:-60}s"
        echo "0 passed, 1 failed"
        exit 1
    fi
    sleep 1
done

check_json "healthcheck is ok" /healthcheck 200 '. == {"status": "ok"} or (.status == "ok")'
request HEAD /healthcheck
if [ "$STATUS" = 200 ] && [ -z "$BODY" ]; then ok "HEAD answers 200 without a body"; else
    fail "HEAD answers 200 without a body" "status $STATUS, body $(short)"
fi
check_json "settings has the contract's fields" /settings 200 '
    (.version | type == "string") and (.hostname | type == "string")
    and (.port | type == "number") and .maxKeyLength == 64 and .maxValueLength == 256
    and (.partitions | type == "number" and . > 0)
    and (.replicationFactor | type == "number" and . >= 1)'
check_json "status has the contract's fields" /status 200 '
    (.hostname | type == "string") and .maxKeyLength == 64 and .maxValueLength == 256
    and (.availableRecords | type == "number") and (.epoch | type == "number")
    and (.nodes | type == "array" and length > 0)
    and all(.nodes[]; has("id") and has("address") and has("state") and has("primaries")
                      and has("replicas") and has("keys") and has("memoryBytes"))'

# --- clear, set, get, is, rm -----------------------------------------------------
check_success "clear" /clear
check_json "getKeys is empty after clear" /getKeys 200 '. == []'
check_json "getValues is empty after clear" /getValues 200 '. == []'
check_json "getAll is empty after clear" /getAll 200 '. == []'
check_json "status counts no records after clear" /status 200 '.availableRecords == 0'

check_success "set creates" "/set?k=alpha&v=1"
check_value "get reads it" alpha '"1"'
check_success "set overwrites" "/set?k=alpha&v=2"
check_value "get reads the new value" alpha '"2"'
check_success "is finds it" "/is?k=alpha"
check_json "status counts it" /status 200 '.availableRecords == 1'
check_success "rm removes it" "/rm?k=alpha"
check_error "get of a removed key" "/get?k=alpha" 404 MISSING_RECORD
check_error "is of a removed key" "/is?k=alpha" 404 MISSING_RECORD
check_error "rm of a removed key" "/rm?k=alpha" 404 MISSING_RECORD
check_error "get of a key never written" "/get?k=never-written" 404 MISSING_RECORD

check_success "plus is a space, escapes decode" "/set?k=hello+world&v=a+b%26c%3Dd%2B"
check_value "value read back decoded" "hello%20world" '"a b&c=d+"'
check_success "empty value is valid" "/set?k=empty&v="
check_value "empty value reads back" empty '""'
check_success "value needing JSON escapes" "/set?k=escapes&v=%22q%22%5C%0A%09%2F"
check_value "JSON escapes round-trip" escapes '"\"q\"\\\n\t/"'

cyr64=$(repeat '%D1%8F' 64) emoji64=$(repeat '%F0%9F%98%80' 64)
check_success "64 two-byte characters make a valid key" "/set?k=$cyr64&v=cyrillic"
check_value "the 64-character key reads back" "$cyr64" '"cyrillic"'
check_success "64 four-byte characters make a valid key" "/set?k=$emoji64&v=emoji"
check_success "256-character value" "/set?k=v256&v=$(repeat x 256)"
check_json "256-character value reads back" "/get?k=v256" 200 'length == 256'
check_success "256 two-byte characters make a valid value" "/set?k=v256u&v=$(repeat '%C3%A9' 256)"

# --- validation, one by one, then precedence --------------------------------------
for route in get rm is set; do
    check_error "$route without k" "/$route?v=1" 400 MISSING_KEY_PARAM
    check_error "$route with k=" "/$route?k=&v=1" 400 EMPTY_KEY
done
check_error "broken escape in k" "/get?k=%ZZ" 400 INVALID_ENCODING
check_error "truncated escape in k" "/get?k=ab%4" 400 INVALID_ENCODING
check_error "non-UTF-8 byte in k" "/get?k=%FF" 400 INVALID_ENCODING
check_error "overlong UTF-8 in k" "/get?k=%C0%AF" 400 INVALID_ENCODING
check_error "NUL in k" "/get?k=a%00b" 400 INVALID_ENCODING
check_error "broken escape in v" "/set?k=a&v=%G1" 400 INVALID_ENCODING
check_error "truncated UTF-8 in v" "/set?k=a&v=%C3" 400 INVALID_ENCODING
check_error "NUL in v" "/set?k=a&v=x%00" 400 INVALID_ENCODING
check_error "65-character key" "/get?k=$(repeat k 65)" 400 MAXIMUM_KEY_LENGTH_REACHED
check_error "65 two-byte characters" "/set?k=$(repeat '%D1%8F' 65)&v=1" 400 MAXIMUM_KEY_LENGTH_REACHED
check_error "65 four-byte characters" "/get?k=$(repeat '%F0%9F%98%80' 65)" 400 MAXIMUM_KEY_LENGTH_REACHED
check_error "set without v" "/set?k=a" 400 MISSING_VALUE_PARAM
check_error "257-character value" "/set?k=a&v=$(repeat x 257)" 400 MAXIMUM_VALUE_LENGTH_REACHED
check_error "257 two-byte characters" "/set?k=a&v=$(repeat '%C3%A9' 257)" 400 MAXIMUM_VALUE_LENGTH_REACHED
check_error "precedence: no k before a long v" "/set?v=$(repeat x 257)" 400 MISSING_KEY_PARAM
check_error "precedence: empty k before a bad v" "/set?k=&v=%ZZ" 400 EMPTY_KEY
check_error "precedence: bad v before a long k" "/set?k=$(repeat k 65)&v=%ZZ" 400 INVALID_ENCODING
check_error "precedence: bad k before a missing v" "/set?k=%ZZ" 400 INVALID_ENCODING
check_error "precedence: long k before a missing v" "/set?k=$(repeat k 65)" 400 MAXIMUM_KEY_LENGTH_REACHED
check_error "precedence: missing v before a long one" "/set?k=a&x=$(repeat x 300)" 400 MISSING_VALUE_PARAM
check_error "nothing was written by the failed sets" "/get?k=a" 404 MISSING_RECORD

# --- routes and methods -----------------------------------------------------------
check_error "unknown route" /nope 404 UNKNOWN_ROUTE
check_error "root is no route" / 404 UNKNOWN_ROUTE
check_error "route names are exact" /GET?k=a 404 UNKNOWN_ROUTE
for method in POST PUT DELETE PATCH; do
    check_error "$method is not allowed" "$method" "/get?k=a" 405 METHOD_NOT_ALLOWED
done
check_error "request target over 8 KiB" "/get?k=a&pad=$(repeat p 9000)" 414 URI_TOO_LONG

# --- bulk reads -------------------------------------------------------------------
check_success "clear before the bulk reads" /clear
expected_keys='[' expected_values='[' expected_all='['
for i in $(seq -w 1 25); do
    request "/set?k=bulk-$i&v=value-$i"
    [ "$STATUS" = 200 ] || fail "set bulk-$i" "status $STATUS"
    expected_keys+="\"bulk-$i\"," expected_values+="\"value-$i\","
    expected_all+="{\"k\":\"bulk-$i\",\"v\":\"value-$i\"},"
done
expected_keys=$(jq -c 'sort' <<<"${expected_keys%,}]")
expected_values=$(jq -c 'sort' <<<"${expected_values%,}]")
expected_all=$(jq -c 'sort_by(.k)' <<<"${expected_all%,}]")
got=$(bulk_sorted /getKeys '.')
if [ "$got" = "$expected_keys" ]; then ok "getKeys lists every key once"; else
    fail "getKeys lists every key once" "got $got"
fi
if [[ $CTYPE == application/json* ]]; then ok "getKeys is application/json"; else
    fail "getKeys is application/json" "Content-Type '$CTYPE'"
fi
got=$(bulk_sorted /getValues '.')
if [ "$got" = "$expected_values" ]; then ok "getValues lists one value per key"; else
    fail "getValues lists one value per key" "got $got"
fi
request /getAll
got=$(jq -c 'sort_by(.k)' <<<"$BODY" 2>/dev/null)
if [ "$got" = "$expected_all" ]; then ok "getAll lists every pair once"; else
    fail "getAll lists every pair once" "got $(printf '%s' "$got" | head -c 200)"
fi
check_json "status counts the bulk keys" /status 200 '.availableRecords == 25'

for spec in "/getKeys 10" "/getAll 7" "/getValues 25" "/getKeys 1"; do
    read -r path limit <<<"$spec"
    if pages "$path" "$limit"; then
        read -r n total max <<<"$PAGES"
        want_pages=$(((25 + limit - 1) / limit))
        dupes=$(uniq -d "$TMP/paged" | wc -l)
        if [ "$total" -eq 25 ] && [ "$max" -le "$limit" ] && [ "$dupes" -eq 0 ] &&
            { [ "$path" = /getValues ] || [ "$(jq -Rn -c '[inputs]' <"$TMP/paged")" = "$expected_keys" ]; }; then
            ok "$path pages of $limit: $n pages, every entry once"
        else
            fail "$path pages of $limit" "$n pages (about $want_pages expected), $total entries, largest page $max, $dupes duplicates"
        fi
    else
        fail "$path pages of $limit" "a page answered $STATUS: $(short)"
    fi
done
request "/getKeys?limit=30"
if [ "$STATUS" = 200 ] && [ "$(jq length <<<"$BODY")" = 25 ] && [ -z "$(header X-Next-Cursor)" ]; then
    ok "one page holds all: no X-Next-Cursor"
else
    fail "one page holds all: no X-Next-Cursor" "status $STATUS, cursor '$(header X-Next-Cursor)'"
fi
check_json "a limit above 10000 is served" "/getKeys?limit=20000" 200 'length <= 25'
for bad in 0 -1 abc 1.5 ""; do
    check_error "limit=$bad" "/getKeys?limit=$bad" 400 INVALID_LIMIT
done
check_error "malformed cursor" "/getKeys?limit=5&cursor=not-a-cursor" 400 INVALID_CURSOR
check_error "cursor out of range" "/getAll?limit=5&cursor=4294967296" 400 INVALID_CURSOR

# --- membership -------------------------------------------------------------------
check_error "join without node" /join 400 INVALID_NODE_ADDRESS
check_error "join with node=" "/join?node=" 400 INVALID_NODE_ADDRESS
check_membership "join with a malformed endpoint" "/join?node=not-an-endpoint" 400 INVALID_NODE_ADDRESS
check_membership "join of an unreachable node" "/join?node=tcp%3A%2F%2Fno-such-host.invalid%3A5601" 502 NODE_UNREACHABLE
check_membership "leave of an unknown node" "/leave?node=no-such-node" 404 UNKNOWN_NODE

# --- leave the store as found: empty ---------------------------------------------
check_success "clear at the end" /clear
check_json "nothing left" /getKeys 200 '. == []'

echo
echo "api-contract: $URL"
printf '%d passed, %d failed, %d skipped\n' "$PASSED" "$FAILED" "$SKIPPED"
[ "$FAILED" -eq 0 ]
