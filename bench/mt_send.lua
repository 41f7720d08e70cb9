-- wrk script of bench/mt_bench.py: POST /api/messages, every text unique, every 201 recorded.
--
-- Arguments after "--" (key=value):
--   out=PREFIX   each thread appends the message id of every 201 answer to
--                PREFIX.<thread index>, one per line
--   token=TOKEN  the API bearer token
--   tag=TAG      a word put into every text (the run and phase), so texts stay unique
--                across the warm-up and the measurement
--   max=N        stop this thread after N answers (0 = no cap; wrk's -d still bounds it)
--   numbers=N    recipients cycle through N numbers +1415555<0000..N-1> (default 1000)
--
-- Each request is POST /api/messages with Authorization: Bearer TOKEN and a JSON body
--   {"to": "+1415555xxxx", "text": "T<16-digit usec epoch> <tag> <thread>-<seq> ..."}
-- The T token is when wrk built the request (LuaJIT FFI gettimeofday), as in the shared
-- harness's load.lua: the fake broker reads it to measure wrk-send -> broker-arrival.
-- smshost answers 201 with {"id": N, ...}; response() writes N to the thread's file, so
-- the harness knows exactly which messages were accepted.
--
-- done() prints one line "MTJSON {...}" that bench/mt_bench.py parses.

local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_usec; } mt_timeval;
int gettimeofday(mt_timeval *tv, void *tz);
]]
local tv = ffi.new("mt_timeval")
local function now_us()
  ffi.C.gettimeofday(tv, nil)
  return tonumber(tv.tv_sec) * 1000000 + tonumber(tv.tv_usec)
end

local threads = {}
local nsetup = 0

function setup(thread)
  thread:set("tid", nsetup)
  nsetup = nsetup + 1
  table.insert(threads, thread)
end

-- globals, not locals: done() reads them through thread:get()
tid = 0
sent, ok201, ok_noid, other, t_first, t_last = 0, 0, 0, 0, 0, 0
first_error = ""

local output, token, tag, maxn, numbers
local headers = {}
local calls = 0

function init(args)
  local outprefix
  token, tag, maxn, numbers = "", "mt", 0, 1000
  for _, a in ipairs(args) do
    local k, v = a:match("^([^=]+)=(.*)$")
    if k == "out" then outprefix = v
    elseif k == "token" then token = v
    elseif k == "tag" then tag = v
    elseif k == "max" then maxn = tonumber(v)
    elseif k == "numbers" then numbers = tonumber(v)
    end
  end
  if not outprefix then
    error("mt_send.lua needs out=PREFIX")
  end
  output = assert(io.open(outprefix .. "." .. tid, "wb"))
  output:setvbuf("full", 65536)
  headers["Content-Type"] = "application/json"
  headers["Authorization"] = "Bearer " .. token
end

function request()
  calls = calls + 1
  local seq = calls
  local t = now_us()
  if calls > 1 or tid ~= 0 then
    -- (thread 0's first call is wrk's one-off check of the request; it is never sent)
    sent = sent + 1
    if t_first == 0 then t_first = t end
  end
  local body = string.format(
    '{"to":"+1415555%04d","text":"T%.0f %s %d-%d hello from the smshost MT benchmark"}',
    seq % numbers, t, tag, tid, seq)
  return wrk.format("POST", wrk.path, headers, body)
end

function response(status, hdrs, body)
  t_last = now_us()
  if status == 201 then
    local id = body and body:match('"id":%s*(%d+)')
    if id then
      output:write(id, "\n")
      ok201 = ok201 + 1
    else
      ok_noid = ok_noid + 1
    end
  else
    other = other + 1
    if first_error == "" then
      first_error = tostring(status) .. " " .. string.sub(body or "", 1, 200)
    end
  end
  if maxn > 0 and ok201 + ok_noid + other >= maxn then
    output:flush()
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  local s, ok, noid, oth, t0, t1 = 0, 0, 0, 0, 0, 0
  local err = ""
  for _, t in ipairs(threads) do
    s = s + (t:get("sent") or 0)
    ok = ok + (t:get("ok201") or 0)
    noid = noid + (t:get("ok_noid") or 0)
    oth = oth + (t:get("other") or 0)
    local a, b = t:get("t_first") or 0, t:get("t_last") or 0
    if a > 0 and (t0 == 0 or a < t0) then t0 = a end
    if b > t1 then t1 = b end
    if err == "" then err = t:get("first_error") or "" end
  end
  err = err:gsub('[%c"\\]', " ")
  local e = summary.errors
  io.write(string.format(
    'MTJSON {"duration_us":%d,"t_first_us":%.0f,"t_last_us":%.0f,"wrk_requests":%d,' ..
    '"sent":%d,"ok201":%d,"ok_noid":%d,"non201":%d,' ..
    '"err_connect":%d,"err_read":%d,"err_write":%d,"err_status":%d,"err_timeout":%d,' ..
    '"lat_mean_us":%.1f,"lat_p50_us":%d,"lat_p90_us":%d,"lat_p99_us":%d,"lat_max_us":%d,' ..
    '"first_error":"%s"}\n',
    summary.duration, t0, t1, summary.requests, s, ok, noid, oth,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, err))
end
