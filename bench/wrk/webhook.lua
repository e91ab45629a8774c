-- wrk script for bench/webhook_wrk.py: replays pre-signed LINE webhook bodies.
--
-- wrk's Lua has no HMAC, so the bodies are built and signed beforehand in Python
-- (kizuna.emulator) and written one per line as "<x-line-signature>\t<body>" to the file
-- named by KIZUNA_WRK_BODIES. Thread t of KIZUNA_WRK_THREADS takes lines t, t+T, t+2T, ...
-- (a disjoint slice), formats them into requests once in init(), and sends them in
-- order; after its last one it starts again from its first (counted as `wrapped`).
--
-- With KIZUNA_WRK_RATE (requests/s over all threads) the script paces sends with
-- delay(): each thread hands out send slots every T/RATE seconds to whichever connection
-- asks next, so the send times do not depend on the answers (open loop, as long as a
-- connection is free when its slot comes). How late each request went out against its
-- slot is recorded (`lag`): a late send means the server did not keep up and wrk's
-- latency, measured from the actual send, understates what a paced client would see.
--
-- done() prints one line, "KIZUNA_WRK <json>", with wrk's summary and latency
-- percentiles and, per thread, requests issued, bodies wrapped, response statuses and
-- the lag histogram; bench/webhook_wrk.py parses it.

local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } kizuna_timespec;
int clock_gettime(int clock_id, kizuna_timespec *tp);
]]
local clock = ffi.new("kizuna_timespec")
local function now_ms()
   ffi.C.clock_gettime(1, clock) -- CLOCK_MONOTONIC
   return tonumber(clock.tv_sec) * 1000 + tonumber(clock.tv_nsec) / 1e6
end

local path = os.getenv("KIZUNA_WRK_BODIES")
local nthreads = tonumber(os.getenv("KIZUNA_WRK_THREADS") or "1")
local rate = tonumber(os.getenv("KIZUNA_WRK_RATE") or "0")

-- setup and done run in wrk's main Lua state --------------------------------------------

local threads = {}

function setup(thread)
   thread:set("tid", #threads)
   table.insert(threads, thread)
end

-- the running phase: one Lua state per wrk thread -----------------------------------------

local requests = {}
local count = 0
issued = 0      -- read by done() through thread:get
wrapped = 0
statuses = {}
lag = {}        -- whole milliseconds late -> requests (paced runs only)

function init(args)
   local line_no = 0
   for line in io.lines(path) do
      if line_no % nthreads == tid then
         local signature, body = line:match("^([^\t]+)\t(.+)$")
         count = count + 1
         requests[count] = wrk.format("POST", nil, {
            ["Content-Type"] = "application/json; charset=utf-8",
            ["User-Agent"] = "LineBotWebhook/2.0",
            ["x-line-signature"] = signature,
         }, body)
      end
      line_no = line_no + 1
   end
   if count == 0 then
      error("no bodies for thread " .. tid .. " in " .. path)
   end
end

local slots = {}    -- send slots handed out by delay(), oldest first
local first_slot, last_slot = 1, 0

function request()
   if count == 0 then
      -- wrk checks the script once in its main state, where init() never runs.
      return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, "{}")
   end
   issued = issued + 1
   if issued > count then
      wrapped = wrapped + 1
   end
   if first_slot <= last_slot then
      local late = math.floor(now_ms() - slots[first_slot])
      slots[first_slot] = nil
      first_slot = first_slot + 1
      if late < 0 then late = 0 end
      lag[late] = (lag[late] or 0) + 1
   end
   return requests[(issued - 1) % count + 1]
end

function response(status, headers, body)
   statuses[status] = (statuses[status] or 0) + 1
end

if rate > 0 then
   local interval = 1000 * nthreads / rate -- ms between two sends of one thread
   local next_slot = nil

   function delay()
      local now = now_ms()
      if next_slot == nil then next_slot = now end
      local slot = next_slot
      next_slot = next_slot + interval
      last_slot = last_slot + 1
      slots[last_slot] = slot
      local wait = slot - now
      if wait <= 0 then return 0 end
      return math.floor(wait + 0.5) -- wrk's timers count whole milliseconds
   end
end

-- done: one JSON line for the Python side ---------------------------------------------------

local function json_table(t)
   local parts = {}
   for key, value in pairs(t) do
      parts[#parts + 1] = string.format('"%s":%d', tostring(key), value)
   end
   return "{" .. table.concat(parts, ",") .. "}"
end

function done(summary, latency, requests)
   local per_thread = {}
   for _, thread in ipairs(threads) do
      per_thread[#per_thread + 1] = string.format(
         '{"tid":%d,"issued":%d,"wrapped":%d,"statuses":%s,"lag_ms":%s}',
         thread:get("tid"), thread:get("issued"), thread:get("wrapped"),
         json_table(thread:get("statuses")), json_table(thread:get("lag")))
   end
   local e = summary.errors
   local percentiles = {}
   for _, p in ipairs({50, 75, 90, 99, 99.9}) do
      percentiles[#percentiles + 1] = string.format('"%g":%d', p, latency:percentile(p))
   end
   io.write(string.format(
      'KIZUNA_WRK {"duration_us":%d,"requests":%d,"bytes":%d,'
      .. '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},'
      .. '"latency_us":{"min":%d,"max":%d,"mean":%.1f,"stdev":%.1f,"percentiles":{%s}},"threads":[%s]}\n',
      summary.duration, summary.requests, summary.bytes,
      e.connect, e.read, e.write, e.status, e.timeout,
      latency.min, latency.max, latency.mean, latency.stdev, table.concat(percentiles, ","),
      table.concat(per_thread, ",")))
end
