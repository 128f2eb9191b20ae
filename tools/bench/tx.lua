-- tx.lua: wrk script for tools/bench/bench.sh: conditional two-key writes,
-- "create both keys only if both are absent", in one request.
--
-- Arguments after "--": style tag
--   style  "kv" for the store's
--          /tx?if.K1=0&if.K2=0&set.K1=VALUE&set.K2=VALUE (one atomic
--          transaction; the keys hash to different partitions but for about
--          one pair in 1024), "webdis" for webdis's /EVAL/SCRIPT/2/K1/K2/V/V
--          with SCRIPT a Lua script doing the same in Redis: EXISTS of both
--          keys, then two SETs
--   tag    makes this run's keys (t<tag>-<n>a, t<tag>-<n>b) differ from every
--          other run's, so the conditions hold on every request (a failed
--          one would be a 409 on the store, counted as an error; on webdis
--          the script would answer 0, and bench.sh checks a pair was written)
-- Values are 32 bytes. done() prints one "KVBENCH ..." line that bench.sh parses.
local style, tag, n = "kv", "0", 0
local value = "0123456789abcdefghijklmnopqrstuv"
local script = "if redis.call('EXISTS',KEYS[1],KEYS[2])==0 then " ..
    "redis.call('SET',KEYS[1],ARGV[1]) redis.call('SET',KEYS[2],ARGV[2]) return 1 end return 0"

-- Every byte but letters and digits as %XX: webdis splits the path on "/"
-- and percent-decodes each part.
local function encode(s)
    return (s:gsub("[^%w]", function(c) return string.format("%%%02X", c:byte()) end))
end

function init(args)
    style = args[1] or style
    tag = args[2] or tag
    script = encode(script)
end

function request()
    n = n + 1
    local k1, k2 = "t" .. tag .. "-" .. n .. "a", "t" .. tag .. "-" .. n .. "b"
    if style == "webdis" then
        return wrk.format("GET", "/EVAL/" .. script .. "/2/" .. k1 .. "/" .. k2 .. "/" .. value ..
            "/" .. value)
    end
    return wrk.format("GET", "/tx?if." .. k1 .. "=0&if." .. k2 .. "=0&set." .. k1 .. "=" .. value ..
        "&set." .. k2 .. "=" .. value)
end

dofile("tools/bench/report.lua") -- done()
