-- wrk script for POST /rank (benchmarks/serving.py runs it): cycles through the request
-- bodies of a file (one JSON body per line, the same bodies as the benchmark's own load
-- generator), counts non-200 answers and answers served by a fallback, and prints one JSON
-- line with the latency percentiles (microseconds) when done.
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  bodies = {}
  for line in io.lines(os.getenv("RANKLAB_WRK_BODIES")) do
    table.insert(bodies, line)
  end
  index = 0
  non200 = 0
  fallbacks = 0
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  index = index % #bodies + 1
  return wrk.format(nil, nil, nil, bodies[index])
end

function response(status, headers, body)
  if status ~= 200 then
    non200 = non200 + 1
  elseif string.find(body, '"served_by":"fallback:', 1, true) then
    fallbacks = fallbacks + 1
  end
end

function done(summary, latency, requests)
  local bad, shed = 0, 0
  for _, thread in ipairs(threads) do
    bad = bad + thread:get("non200")
    shed = shed + thread:get("fallbacks")
  end
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"p50_us":%d,"p95_us":%d,"p99_us":%d,' ..
    '"socket_errors":%d,"non200":%d,"fallbacks":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(95),
    latency:percentile(99), e.connect + e.read + e.write + e.timeout, bad, shed))
end
