-- wrk: GET /v1/products/{id} for an id drawn at random from FIRST_ID .. FIRST_ID+ID_COUNT-1
-- (environment), so reads spread over a catalog instead of one hot key.
local first = tonumber(os.getenv("FIRST_ID"))
local count = tonumber(os.getenv("ID_COUNT"))

function init(args)
    math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
end

function request()
    return wrk.format("GET", "/v1/products/" .. (first + math.random(0, count - 1)))
end
