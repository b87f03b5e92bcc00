-- GET with the bench key. PACKD_BENCH_PATH is one path, or PACKD_BENCH_IDS a
-- file of package ids to cycle through (GET /v1/packages/{id}).
local key = os.getenv("PACKD_BENCH_KEY")
local path = os.getenv("PACKD_BENCH_PATH")
local ids = {}
local ids_file = os.getenv("PACKD_BENCH_IDS")
if ids_file then
  for line in io.lines(ids_file) do ids[#ids + 1] = line end
end
local headers = { ["X-API-Key"] = key }
local i = 0

request = function()
  if #ids > 0 then
    i = i + 1
    return wrk.format("GET", "/v1/packages/" .. ids[(i % #ids) + 1], headers)
  end
  return wrk.format("GET", path, headers)
end
