-- setif.lua: wrk script for tools/bench/bench.sh: conditional creates,
-- set.lua's requests with the condition "only if absent": the store's
-- /set?k=KEY&v=VALUE&ifVersion=0 (checked, and holding, on every request)
-- against webdis's /SETNX/KEY/VALUE, the nearest Redis command. Same
-- arguments as set.lua; keys c<tag>-<n>.
conditional = true
dofile("tools/bench/set.lua")
