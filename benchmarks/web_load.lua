-- wrk script for benchmarks/web.py.
--   wrk ... -s web_load.lua URL -- post TOKENFILE THREADS   one-click POSTs, one token each
--   wrk ... -s web_load.lua URL -- get                      GET of the URL's path
-- Counts requests issued and responses by status; done() prints one RESULT line (JSON).
local threads = {}

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  mode = args[1]
  issued, ok, bad = 0, 0, 0
  tokens = {}
  if mode == "post" then
    local n, i = tonumber(args[3]), 0
    for line in io.lines(args[2]) do
      if i % n == id then table.insert(tokens, line) end
      i = i + 1
    end
  end
end

function request()
  issued = issued + 1
  if mode == "post" then
    -- Never reuse a token: every POST must be a new unsubscribe.
    local token = tokens[issued]
    if token == nil then token = "exhausted" end
    return wrk.format("POST", "/unsubscribe/" .. token,
      {["Content-Type"] = "application/x-www-form-urlencoded"}, "List-Unsubscribe=One-Click")
  end
  return wrk.format("GET")
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
