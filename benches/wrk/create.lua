-- POST /v1/packages with a name no other request of any run uses:
-- PACKD_BENCH_RUN, the wrk thread and a counter.
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end

local key = os.getenv("PACKD_BENCH_KEY")
local run = os.getenv("PACKD_BENCH_RUN")
local headers = { ["X-API-Key"] = key, ["Content-Type"] = "application/json" }
local n = 0

request = function()
  n = n + 1
  local body = string.format('{"name":"bench-%s-%d-%d","version":"1.0"}', run, tid, n)
  return wrk.format("POST", "/v1/packages", headers, body)
end
