-- wrk: GET <PATH_PREFIX><id> for an id drawn at random from FIRST_ID .. FIRST_ID+ID_COUNT-1
-- (environment; PATH_PREFIX defaults to /v1/products/), so reads spread over a catalog
-- instead of one hot key. Every row of bench/cache.sh runs through this script, the floor
-- too, so the generator's own cost is the same in each.
local prefix = os.getenv("PATH_PREFIX") or "/v1/products/"
local first = tonumber(os.getenv("FIRST_ID"))
local count = tonumber(os.getenv("ID_COUNT"))

function init(args)
    math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
end

function request()
    return wrk.format("GET", prefix .. (first + math.random(0, count - 1)))
end
