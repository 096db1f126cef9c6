-- wrk script for benchmarks/signup.py: sign-up POSTs, each with a new address.
--   wrk ... -s signup_load.lua URL -- person STAMP ROUND   a person's form (valid stamp)
--   wrk ... -s signup_load.lua URL -- bot STAMP ROUND      the same with the honeypot filled
-- Counts requests issued and responses by status; done() prints one RESULT line (JSON).
local threads = {}

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  mode, stamp, round = args[1], args[2], args[3]
  issued, ok, bad = 0, 0, 0
  trap = ""
  if mode == "bot" then trap = "http%3A%2F%2Fbots.example.net" end
end

function request()
  issued = issued + 1
  -- Never the same address twice (the per-address limit would answer without a write).
  local body = "email=r" .. round .. "-" .. id .. "-" .. issued .. "%40example.org" ..
    "&name=Reader&website=" .. trap .. "&stamp=" .. stamp
  return wrk.format("POST", nil,
    {["Content-Type"] = "application/x-www-form-urlencoded"}, body)
end

function response(status, headers, body)
  if status == 200 then ok = ok + 1 else bad = bad + 1 end
end

function done(summary, latency, requests)
  local t_issued, t_ok, t_bad = 0, 0, 0
  for _, t in ipairs(threads) do
    t_issued = t_issued + t:get("issued")
    t_ok = t_ok + t:get("ok")
    t_bad = t_bad + t:get("bad")
  end
  local e = summary.errors
  io.write(string.format(
    'RESULT {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, ' ..
    '"socket_errors": %d, "timeouts": %d, "issued": %d, "ok": %d, "not_ok": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write, e.timeout, t_issued, t_ok, t_bad))
end
