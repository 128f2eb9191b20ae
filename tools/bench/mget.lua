-- mget.lua: wrk script for tools/bench/bench.sh: reads of 10 random
-- preloaded keys in one request.
--
-- Arguments after "--": style keys seed
--   style  "kv" for the store's /mget?k=K1&...&k=K10 (one consistent
--          snapshot), "webdis" for webdis's /MGET/K1/.../K10
--   keys   keys were preloaded as k<seed>-0 .. k<seed>-<keys-1>
--   seed   as given to kv-stress --seed when preloading
-- Keys per second are 10 x the requests per second. done() prints one
-- "KVBENCH ..." line that bench.sh parses.
local style, keys, seed = "kv", 100000, "1"
local per_request = 10

function init(args)
    style = args[1] or style
    keys = tonumber(args[2] or keys)
    seed = args[3] or seed
    math.randomseed(os.time())
end

function request()
    local parts = {}
    for i = 1, per_request do
        parts[i] = "k" .. seed .. "-" .. math.random(0, keys - 1)
    end
    if style == "webdis" then
        return wrk.format("GET", "/MGET/" .. table.concat(parts, "/"))
    end
    return wrk.format("GET", "/mget?k=" .. table.concat(parts, "&k="))
end

dofile("tools/bench/report.lua") -- done()
