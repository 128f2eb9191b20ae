-- get.lua: wrk script for tools/bench/bench.sh that reads random preloaded keys.
--
-- Arguments after "--": style keys seed
--   style  "kv" for the store's /get?k=KEY (also the bare MHD server, which
--          answers any path), "webdis" for webdis's /GET/KEY
--   keys   keys were preloaded as k<seed>-0 .. k<seed>-<keys-1>
--   seed   as given to kv-stress --seed when preloading
-- done() prints one "KVBENCH ..." line that bench.sh parses.
local style, keys, seed = "kv", 100000, "1"

function init(args)
    style = args[1] or style
    keys = tonumber(args[2] or keys)
    seed = args[3] or seed
    math.randomseed(os.time())
end

function request()
    local key = "k" .. seed .. "-" .. math.random(0, keys - 1)
    if style == "webdis" then
        return wrk.format("GET", "/GET/" .. key)
    end
    return wrk.format("GET", "/get?k=" .. key)
end

dofile("tools/bench/report.lua") -- done()
