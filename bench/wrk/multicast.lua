-- wrk script for bench/emulator_multicast.py: posts LINE multicast requests of 500 user ids.
--
-- The file named by KIZUNA_WRK_BODIES holds one JSON body per line (built in Python: 500
-- distinct ids of users the emulator knows, one text message). Thread t of
-- KIZUNA_WRK_THREADS takes lines t, t+T, ... and sends them round and round, each with a
-- fresh X-Line-Retry-Key (as a campaign sender does), so every request is executed.
-- done() prints "KIZUNA_WRK <json>" with the requests issued and the answers per status.

local path = os.getenv("KIZUNA_WRK_BODIES")
local token = os.getenv("KIZUNA_WRK_TOKEN") or "emulator-token"
local nthreads = tonumber(os.getenv("KIZUNA_WRK_THREADS") or "1")

local threads = {}

function setup(thread)
   thread:set("tid", #threads)
   table.insert(threads, thread)
end

local bodies = {}
local count = 0
local next_body = 0
issued = 0
statuses = {}

function init(args)
   local line_no = 0
   for line in io.lines(path) do
      if line_no % nthreads == tid then
         count = count + 1
         bodies[count] = line
      end
      line_no = line_no + 1
   end
   math.randomseed(os.time() + tid * 7919)
end

local function uuid4()
   local template = "xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx"
   return (template:gsub("[xy]", function(c)
      local v = (c == "x") and math.random(0, 15) or math.random(8, 11)
      return string.format("%x", v)
   end))
end

function request()
   next_body = next_body % count + 1
   issued = issued + 1
   return wrk.format("POST", "/v2/bot/message/multicast", {
      ["Content-Type"] = "application/json",
      ["Authorization"] = "Bearer " .. token,
      ["X-Line-Retry-Key"] = uuid4(),
   }, bodies[next_body])
end

function response(status, headers, body)
   statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
   local total_issued = 0
   local merged = {}
   for _, thread in ipairs(threads) do
      total_issued = total_issued + thread:get("issued")
      for status, n in pairs(thread:get("statuses")) do
         merged[tostring(status)] = (merged[tostring(status)] or 0) + n
      end
   end
   local parts = {}
   for status, n in pairs(merged) do
      table.insert(parts, string.format('"%s": %d', status, n))
   end
   io.write(string.format(
      'KIZUNA_WRK {"issued": %d, "duration_us": %d, "requests": %d, "errors_connect": %d, "errors_timeout": %d, "p50_us": %d, "p99_us": %d, "statuses": {%s}}\n',
      total_issued, summary.duration, summary.requests, summary.errors.connect, summary.errors.timeout,
      latency:percentile(50), latency:percentile(99), table.concat(parts, ", ")))
end
