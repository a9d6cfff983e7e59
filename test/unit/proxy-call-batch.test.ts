/**
 * ProxyCallBatch (proxy-call-batch.ts): a proxied call's count and latency are held in a batch, and every read of the
 * metrics (a scrape) sees exactly what applying each call at once would have given: nothing missing, nothing twice.
 */
import client from 'prom-client';
import { Metrics } from '../../src/observability/metrics.js';
import { ProxyCallBatch } from '../../src/observability/proxy-call-batch.js';
import { metricValue as valueOf } from '../helpers/metrics-text.js';

test('a scrape sees every call recorded before it, with exact counts, buckets and sums', async () => {
  const metrics = new Metrics({ processMetrics: false });
  metrics.proxyCalls.record('GET', 200, 0.002);
  metrics.proxyCalls.record('GET', 200, 0.02);
  metrics.proxyCalls.record('GET', 404, 0.3);
  metrics.proxyCalls.record('POST', 201, 0.004);

  const text = await metrics.registry.metrics();
  expect(valueOf(text, 'smart_bff_proxy_requests_total{method="GET",status="200"}')).toBe(2);
  expect(valueOf(text, 'smart_bff_proxy_requests_total{method="GET",status="404"}')).toBe(1);
  expect(valueOf(text, 'smart_bff_proxy_requests_total{method="POST",status="201"}')).toBe(1);
  expect(valueOf(text, 'smart_bff_proxy_request_duration_seconds_count{method="GET"}')).toBe(3);
  expect(valueOf(text, 'smart_bff_proxy_request_duration_seconds_sum{method="GET"}')).toBeCloseTo(0.322, 9);
  expect(valueOf(text, 'smart_bff_proxy_request_duration_seconds_bucket{le="0.005",method="GET"}')).toBe(1);
  expect(valueOf(text, 'smart_bff_proxy_request_duration_seconds_bucket{le="0.025",method="GET"}')).toBe(2);
  expect(valueOf(text, 'smart_bff_proxy_request_duration_seconds_bucket{le="0.5",method="GET"}')).toBe(3);
  expect(valueOf(text, 'smart_bff_proxy_request_duration_seconds_count{method="POST"}')).toBe(1);
});

test('a second scrape counts nothing twice, and adds only the calls recorded since', async () => {
  const metrics = new Metrics({ processMetrics: false });
  metrics.proxyCalls.record('GET', 200, 0.001);
  await metrics.registry.metrics();
  expect(valueOf(await metrics.registry.metrics(), 'smart_bff_proxy_requests_total{method="GET",status="200"}')).toBe(1);
  metrics.proxyCalls.record('GET', 200, 0.001);
  const text = await metrics.registry.metrics();
  expect(valueOf(text, 'smart_bff_proxy_requests_total{method="GET",status="200"}')).toBe(2);
  expect(valueOf(text, 'smart_bff_proxy_request_duration_seconds_count{method="GET"}')).toBe(2);
});

test('either metric read on its own sees the calls (each one applies the batch before it is read)', async () => {
  const metrics = new Metrics({ processMetrics: false });
  metrics.proxyCalls.record('GET', 200, 0.001);
  expect((await metrics.proxyLatency.get()).values.find((v) => v.metricName === 'smart_bff_proxy_request_duration_seconds_count')?.value).toBe(1);
  metrics.proxyCalls.record('GET', 200, 0.001);
  expect((await metrics.proxyRequests.get()).values[0]?.value).toBe(2);
});

test('a full batch is applied at once, so no call is lost however many come between reads', async () => {
  const registry = new client.Registry();
  // no `collect`: what these metrics hold is only what the batch applied on its own
  const requests = new client.Counter({ name: 'r_total', help: 'r', labelNames: ['method', 'status'] as const, registers: [registry] });
  const latency = new client.Histogram({ name: 'l_seconds', help: 'l', labelNames: ['method'] as const, buckets: [1], registers: [registry] });
  const batch = new ProxyCallBatch(requests, latency, 3);
  for (let i = 0; i < 7; i++) batch.record('GET', 200, 0.5);
  expect((await requests.get()).values[0]?.value).toBe(6); // two full batches applied, one call held
  batch.flush();
  expect((await requests.get()).values[0]?.value).toBe(7);
  expect((await latency.get()).values.find((v) => v.metricName === 'l_seconds_count')?.value).toBe(7);
  batch.flush(); // an empty batch applies nothing
  expect((await requests.get()).values[0]?.value).toBe(7);
});

test('the capacity must be a positive integer', () => {
  const requests = new client.Counter({ name: 'r2_total', help: 'r', labelNames: ['method', 'status'] as const, registers: [] });
  const latency = new client.Histogram({ name: 'l2_seconds', help: 'l', labelNames: ['method'] as const, registers: [] });
  expect(() => new ProxyCallBatch(requests, latency, 0)).toThrow(RangeError);
  expect(() => new ProxyCallBatch(requests, latency, 1.5)).toThrow(RangeError);
});
