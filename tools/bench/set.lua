-- set.lua: wrk script for tools/bench/bench.sh that writes distinct keys.
--
-- Arguments after "--": style tag
--   style  "kv" for the store's /set?k=KEY&v=VALUE (also the bare MHD server,
--          which answers any path), "webdis" for webdis's /SET/KEY/VALUE
--   tag    makes this run's keys (s<tag>-0, s<tag>-1, ...) differ from every
--          other run's, so each request creates a key
-- Values are 32 bytes. done() prints one "KVBENCH ..." line that bench.sh parses.
local style, tag, n = "kv", "0", 0
-- setif.lua sets this before loading this file: create only if absent.
conditional = conditional or false
local value = "0123456789abcdefghijklmnopqrstuv"

function init(args)
    style = args[1] or style
    tag = args[2] or tag
end

function request()
    n = n + 1
    local key = (conditional and "c" or "s") .. tag .. "-" .. n
    if style == "webdis" then
        return wrk.format("GET", (conditional and "/SETNX/" or "/SET/") .. key .. "/" .. value)
    end
    return wrk.format("GET", "/set?k=" .. key .. "&v=" .. value .. (conditional and "&ifVersion=0" or ""))
end

dofile("tools/bench/report.lua") -- done()
