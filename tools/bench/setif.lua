-- setif.lua: wrk script for tools/bench/bench.sh: conditional creates.
--
-- Arguments after "--": style tag
--   style  "kv" for the store's /set?k=KEY&v=VALUE&ifVersion=0 (create only
--          if absent: the condition is checked, and holds, on every
--          request), "webdis" for webdis's /SETNX/KEY/VALUE, the nearest
--          Redis command
--   tag    makes this run's keys differ from every other run's
-- Values are 32 bytes. done() prints one "KVBENCH ..." line that bench.sh parses.
local style, tag, n = "kv", "0", 0
local value = "0123456789abcdefghijklmnopqrstuv"

function init(args)
    style = args[1] or style
    tag = args[2] or tag
end

function request()
    n = n + 1
    local key = "c" .. tag .. "-" .. n
    if style == "webdis" then
        return wrk.format("GET", "/SETNX/" .. key .. "/" .. value)
    end
    return wrk.format("GET", "/set?k=" .. key .. "&v=" .. value .. "&ifVersion=0")
end

function done(summary, latency, requests)
    local seconds = summary.duration / 1e6
    local e = summary.errors
    io.write(string.format(
        "KVBENCH requests=%d seconds=%.3f rps=%.1f p50_us=%d p90_us=%d p99_us=%d max_us=%d " ..
        "non2xx=%d socket_errors=%d\n",
        summary.requests, seconds, summary.requests / seconds, latency:percentile(50),
        latency:percentile(90), latency:percentile(99), latency.max, e.status,
        e.connect + e.read + e.write + e.timeout))
end
