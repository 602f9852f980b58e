-- Fixed-rate load for bench/soak.sh (wrk 4.x, which runs LuaJIT).
--
--   wrk -t T -c C -d D -s bench/soak.lua URL -- RATE T0 SECONDS WINDOW OUTDIR T
--
-- wrk has no rate option: this script paces the requests itself. Thread
-- `id` (0..T-1) owns the slots T0 + (k + id/T) * T/RATE (epoch seconds), so
-- the threads together offer RATE requests per second from T0 to
-- T0 + SECONDS, evenly spread. wrk calls delay() whenever one of the
-- thread's connections is free to send; it gets the thread's next slot and
-- waits for it (wrk's timers count whole milliseconds). When the thread is
-- behind its slots (slow answers), free connections send at once until it
-- has caught up, so a stall does not lower the offered load, as long as
-- connections are free (like wrk2; plain wrk with a think time would slow
-- down instead).
--
-- wrk's request() and response() callbacks do not say which connection
-- they are for, so each request carries its own X-Request-Id
-- ("soak-<thread>-<n>", which the gateway keeps and returns): response()
-- finds the send time by it.
--
-- Per window of WINDOW seconds (by the time the request was sent), each
-- thread appends lines to OUTDIR/lat-<id>.txt (several lines for one window
-- add up):
--   <window> <ok> <non_2xx> <lost> <max_lag_ms> <bucket>:<count> ...
-- ok = status 2xx; lost = no answer within 15 s (wrk's socket errors are
-- also in its summary); max_lag_ms = how late, at most, a request left after
-- its slot; buckets: latency from sending the request to the complete
-- response, as floor(40 * ln(microseconds)), 2.5 % wide each.
-- bench/soak.py merges the threads' files.
local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } soak_timespec;
int clock_gettime(int clk_id, soak_timespec *tp);
]]
local CLOCK_REALTIME = 0
local ts = ffi.new("soak_timespec")
local function now()
  ffi.C.clock_gettime(CLOCK_REALTIME, ts)
  return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) * 1e-9
end

-- setup() runs in wrk's main Lua state, once per thread: number them.
local threads = 0
function setup(thread)
  thread:set("id", threads)
  threads = threads + 1
end

local LOST_AFTER = 15
local prefix, t0, t_end, window, interval, first, k, out
local started, ended = false, false
local seq = 0
local sent = {}                -- request id -> send time
local slots, head, tail = {}, 1, 0 -- slots handed out by delay(), not yet sent
local cur, ok, bad, lost, max_lag, hist = nil, 0, 0, 0, 0, {}
local windows = {}             -- window -> {ok, bad, lost, max_lag, hist}

function init(args)
  local rate, nthreads = tonumber(args[1]), tonumber(args[6])
  t0, window = tonumber(args[2]), tonumber(args[4])
  t_end = t0 + tonumber(args[3])
  interval = nthreads / rate
  first = t0 + (id / nthreads) * interval
  k = 0
  out = assert(io.open(args[5] .. "/lat-" .. id .. ".txt", "w"))
  -- The request wrk would send, minus its final CRLF: the id header goes there.
  local base = wrk.format()
  prefix = base:sub(1, -3)
end

local function win(t)
  local w = math.floor((t - t0) / window)
  if w < 0 then w = 0 end -- a timer that fired a hair early
  local d = windows[w]
  if d == nil then
    d = { ok = 0, bad = 0, lost = 0, lag = 0, hist = {} }
    windows[w] = d
  end
  return d
end

-- Writes every window that can no longer change (all its requests answered
-- or given up), or all of them at the end.
local function flush(all)
  local t = now()
  local open = {}
  for rid, at in pairs(sent) do
    if t - at > LOST_AFTER then
      win(at).lost = win(at).lost + 1
      sent[rid] = nil
    else
      local w = math.floor((at - t0) / window)
      open[w] = true
    end
  end
  local current = math.floor((t - t0) / window)
  for w, d in pairs(windows) do
    if all or (w < current and not open[w]) then
      local parts = { string.format("%d %d %d %d %.3f", w, d.ok, d.bad, d.lost, d.lag * 1000) }
      for b, n in pairs(d.hist) do
        parts[#parts + 1] = b .. ":" .. n
      end
      out:write(table.concat(parts, " "), "\n")
      windows[w] = nil
    end
  end
  out:flush()
end

local last_flush = 0

function delay()
  started = true
  local slot = first + k * interval
  if slot >= t_end - 1e-6 then
    ended = true
    return 3600000 -- done: idle until wrk stops
  end
  k = k + 1
  tail = tail + 1
  slots[tail] = slot
  local ms = (slot - now()) * 1000
  if ms < 0 then return 0 end
  return math.ceil(ms)
end

function request()
  -- wrk calls request() once at startup to check the script; that call
  -- sends nothing.
  if not started then return prefix .. "\r\n" end
  local t = now()
  local slot = t
  if head <= tail then
    slot = slots[head]
    slots[head] = nil
    head = head + 1
  end
  seq = seq + 1
  local rid = "soak-" .. id .. "-" .. seq
  sent[rid] = t
  local d = win(t)
  if t - slot > d.lag then d.lag = t - slot end
  if t - last_flush > 1 then
    last_flush = t
    flush(false)
  end
  return prefix .. "X-Request-Id: " .. rid .. "\r\n\r\n"
end

function response(status, headers, body)
  local t = now()
  local rid = headers["x-request-id"] or headers["X-Request-Id"]
  local at = rid and sent[rid]
  local d
  if at then
    sent[rid] = nil
    d = win(at)
    local us = (t - at) * 1e6
    if us < 1 then us = 1 end
    local b = math.floor(40 * math.log(us))
    d.hist[b] = (d.hist[b] or 0) + 1
  else
    d = win(t)
  end
  if status >= 200 and status < 300 then d.ok = d.ok + 1 else d.bad = d.bad + 1 end
  if ended then
    -- After the last slot: write what is complete, everything once the
    -- last answer is in.
    flush(next(sent) == nil)
  end
end

-- In the main state, after the run: wrk's own totals, for bench/soak.sh.
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "SOAK_WRK requests=%d connect=%d read=%d write=%d timeout=%d status=%d duration_s=%.3f\n",
    summary.requests, e.connect, e.read, e.write, e.timeout, e.status, summary.duration / 1e6))
end
