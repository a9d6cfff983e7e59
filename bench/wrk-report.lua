-- wrk's summary as one JSON line (latencies in microseconds), read by bench/lib.ts. Statuses of 400 and above
-- are counted by wrk itself (errors.status); a `response` hook would slow wrk down, so redirects are checked by
-- bench/lib.ts with a single request before the run.
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},"latency_us":{"mean":%.1f,"p50":%d,"p90":%d,"p99":%d,"max":%d}}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
