-- wrk script of bench/mo_ingest.py: every request is used once, every 2xx is recorded.
--
-- Arguments after "--" (key=value):
--   in=FILE      the pre-generated requests, one per line: MessageSid TAB
--                X-Twilio-Signature TAB form body (bench/mo_ingest.py writes it)
--   out=PREFIX   each thread appends the X-Request-Id of every 2xx answer to
--                PREFIX.<thread index>, one per line
--   path=PATH    request path (default: the URL's)
--   threads=N    wrk's -t (thread i sends lines i, i+N, i+2N, ...)
--
-- Each request is POST PATH with Content-Type form, X-Twilio-Signature and
-- X-Request-Id = the MessageSid. smshost echoes X-Request-Id in its answer, so
-- response() knows which message a 2xx acknowledges even with 32 connections in
-- flight. (wrk's response() gets no connection, so the echo is the only link.)
--
-- The file is opened at init and read one line per request (buffered): no line is
-- sent twice, and a large file costs no memory. When the file runs out, the thread
-- stops at its next answer; requests that other connections start in between are
-- "GET /health" fillers (never a message), counted as fillers.
--
-- Before the run, wrk calls request() once on thread 0 to check the request it
-- returns (script_verify_request in wrk 4.x) and never sends it: that call gets a
-- filler and consumes no line.
--
-- done() prints one line "MOJSON {...}" that bench/mo_ingest.py parses.

local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_usec; } mo_timeval;
int gettimeofday(mo_timeval *tv, void *tz);
]]
local tv = ffi.new("mo_timeval")
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
sent, fillers, ok2xx, ok_noid, other, t_first, t_last = 0, 0, 0, 0, 0, 0, 0
exhausted = 0
first_error = ""

local input, output, path, nthreads
local pending = nil          -- the next line of this thread (read ahead)
local calls = 0
local headers = {}
local FILLER_ID = "mo-ingest-filler"

local function next_line()
  local line = input:read("*l")
  -- skip the other threads' lines
  for _ = 2, nthreads do
    if line == nil then break end
    local skipped = input:read("*l")
    if skipped == nil then break end
  end
  return line
end

function init(args)
  local infile, outprefix
  path = wrk.path
  nthreads = 1
  for _, a in ipairs(args) do
    local k, v = a:match("^([^=]+)=(.*)$")
    if k == "in" then infile = v
    elseif k == "out" then outprefix = v
    elseif k == "path" then path = v
    elseif k == "threads" then nthreads = tonumber(v)
    end
  end
  if not infile or not outprefix then
    error("mo_ingest.lua needs in=FILE and out=PREFIX")
  end
  input = assert(io.open(infile, "rb"))
  input:setvbuf("full", 1048576)
  for _ = 1, tid do input:read("*l") end   -- this thread starts at line tid
  output = assert(io.open(outprefix .. "." .. tid, "wb"))
  output:setvbuf("full", 65536)
  pending = next_line()
  if pending == nil then exhausted = 1 end
end

local function filler()
  fillers = fillers + 1
  return wrk.format("GET", "/health", {["X-Request-Id"] = FILLER_ID}, nil)
end

function request()
  calls = calls + 1
  if tid == 0 and calls == 1 then
    -- wrk's one-off check of the request at start; never sent
    fillers = fillers - 1
    return filler()
  end
  local line = pending
  if line == nil then
    exhausted = 1
    return filler()
  end
  pending = next_line()
  if pending == nil then exhausted = 1 end
  local a = line:find("\t", 1, true)
  local b = line:find("\t", a + 1, true)
  headers["Content-Type"] = "application/x-www-form-urlencoded"
  headers["X-Twilio-Signature"] = line:sub(a + 1, b - 1)
  headers["X-Request-Id"] = line:sub(1, a - 1)
  sent = sent + 1
  if t_first == 0 then t_first = now_us() end
  return wrk.format("POST", path, headers, line:sub(b + 1))
end

function response(status, hdrs, body)
  t_last = now_us()
  local rid = hdrs["x-request-id"] or hdrs["X-Request-Id"]
  if rid == FILLER_ID then
    -- a filler's answer: not a message
  elseif status >= 200 and status < 300 then
    if rid then
      output:write(rid, "\n")
      ok2xx = ok2xx + 1
    else
      ok_noid = ok_noid + 1
    end
  else
    other = other + 1
    if first_error == "" then
      first_error = tostring(status) .. " " .. string.sub(body or "", 1, 200)
    end
  end
  if exhausted == 1 then
    output:flush()
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  local s, f, ok, noid, oth, t0, t1, ex = 0, 0, 0, 0, 0, 0, 0, 0
  local err = ""
  for _, t in ipairs(threads) do
    s = s + (t:get("sent") or 0)
    f = f + (t:get("fillers") or 0)
    ok = ok + (t:get("ok2xx") or 0)
    noid = noid + (t:get("ok_noid") or 0)
    oth = oth + (t:get("other") or 0)
    ex = ex + (t:get("exhausted") or 0)
    local a, b = t:get("t_first") or 0, t:get("t_last") or 0
    if a > 0 and (t0 == 0 or a < t0) then t0 = a end
    if b > t1 then t1 = b end
    if err == "" then err = t:get("first_error") or "" end
  end
  err = err:gsub('[%c"\\]', " ")
  local e = summary.errors
  io.write(string.format(
    'MOJSON {"duration_us":%d,"t_first_us":%.0f,"t_last_us":%.0f,"wrk_requests":%d,' ..
    '"sent":%d,"fillers":%d,"ok2xx":%d,"ok_noid":%d,"non2xx":%d,"exhausted_threads":%d,' ..
    '"err_connect":%d,"err_read":%d,"err_write":%d,"err_status":%d,"err_timeout":%d,' ..
    '"lat_mean_us":%.1f,"lat_p50_us":%d,"lat_p90_us":%d,"lat_p99_us":%d,"lat_max_us":%d,' ..
    '"first_error":"%s"}\n',
    summary.duration, t0, t1, summary.requests, s, f, ok, noid, oth, ex,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, err))
end
