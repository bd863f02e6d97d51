-- wrk reporting hook: prints one JSON line with the figures the harness needs (latency in µs).
-- With WRK_DELAY_MS set it also paces: before each request a connection waits a random time,
-- exponential with that mean (whole ms, dithered so the mean stays exact). Random waits keep the
-- connections from moving in step, so arrivals are Poisson-like (fixed waits would send all
-- connections' requests in bursts and measure the burst, not the proxy).
local pace = tonumber(os.getenv("WRK_DELAY_MS") or "")
if pace then
  math.randomseed(os.time())
  delay = function()
    local x = -pace * math.log(1 - math.random())
    local whole = math.floor(x)
    if math.random() < x - whole then whole = whole + 1 end
    return whole
  end
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"bytes":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,"p50_us":%d,"p99_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
