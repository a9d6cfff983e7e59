/**
 * Checklist #45: every cache keyed by request input is bounded. With a wildcard allow-list
 * (`SMART_ISS=https://host/t/*`) anyone can name a new issuer per request; the discovery cache is an LRU with a
 * maximum size, and discovering issuers never discovered before is limited per minute (past it: 503
 * discovery_rate_limited with no outbound request). Against a local EHR that counts its discovery fetches.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Browser } from '../helpers/browser.js';
import { startBff, type StartedBff } from '../helpers/bff.js';
import { json } from '../helpers/json.js';
import { DiscoveryCache } from '../../src/smart/discovery.js';
import { captureLogs } from '../helpers/log-capture.js';

let ehr: http.Server;
let origin: string;
const fetches = new Map<string, number>();
const started: StartedBff[] = [];

beforeAll(async () => {
  ehr = http.createServer((req, res) => {
    const m = /^\/(t\/[^/]+|static)\/\.well-known\/smart-configuration$/.exec(req.url ?? '');
    if (!m) return void res.writeHead(404).end();
    fetches.set(m[1]!, (fetches.get(m[1]!) ?? 0) + 1);
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({
      authorization_endpoint: `${origin}/authorize`, token_endpoint: `${origin}/token`, capabilities: ['launch-ehr', 'launch-standalone'],
      grant_types_supported: ['authorization_code'], code_challenge_methods_supported: ['S256'],
    }));
  });
  await new Promise<void>((r) => ehr.listen(0, '127.0.0.1', r));
  origin = `http://127.0.0.1:${(ehr.address() as AddressInfo).port}`;
});
afterAll(async () => {
  for (const b of started) await b.close();
  ehr.close();
});

async function bff(env: Record<string, string>): Promise<StartedBff> {
  const b = await startBff({ SMART_ISS: `${origin}/static,${origin}/t/*`, SMART_CLIENT_ID: 'wild-app', LAUNCH_RATE_LIMIT: '10000', ...env });
  started.push(b);
  return b;
}

const launch = (b: StartedBff, iss: string) => new Browser().get(`${b.url}/launch?iss=${encodeURIComponent(iss)}&launch=x`, { accept: 'application/json' });
const total = () => [...fetches.values()].reduce((n, v) => n + v, 0);

test('#45 the discovery cache is an LRU of SMART_DISCOVERY_CACHE_MAX issuers: the least recently used is fetched again', async () => {
  const b = await bff({ SMART_DISCOVERY_CACHE_MAX: '5', SMART_DISCOVERY_NEW_PER_MINUTE: '100' });
  for (let i = 0; i < 8; i++) expect((await launch(b, `${origin}/t/lru-${i}`)).status).toBe(302);
  expect(fetches.get('t/lru-0')).toBe(1);
  // the most recent is cached; the first was evicted and is discovered again
  expect((await launch(b, `${origin}/t/lru-7`)).status).toBe(302);
  expect(fetches.get('t/lru-7')).toBe(1);
  expect((await launch(b, `${origin}/t/lru-0`)).status).toBe(302);
  expect(fetches.get('t/lru-0')).toBe(2);
});

test('#45 new issuers beyond SMART_DISCOVERY_NEW_PER_MINUTE → 503 discovery_rate_limited with no outbound request', async () => {
  const b = await bff({ SMART_DISCOVERY_CACHE_MAX: '100', SMART_DISCOVERY_NEW_PER_MINUTE: '8' });
  for (let i = 0; i < 8; i++) expect((await launch(b, `${origin}/t/flood-${i}`)).status).toBe(302);
  const before = total();
  for (let i = 8; i < 20; i++) {
    const res = await launch(b, `${origin}/t/flood-${i}`);
    expect(res.status).toBe(503);
    const body = await json(res);
    expect(body.error).toBe('discovery_rate_limited');
  }
  expect(total()).toBe(before);
  // issuers already discovered keep working, and so does an issuer named exactly in SMART_ISS
  expect((await launch(b, `${origin}/t/flood-3`)).status).toBe(302);
  expect((await launch(b, `${origin}/static`)).status).toBe(302);
  expect(b.logs.find('discovery.rate_limited').length).toBeGreaterThan(0);
});

test('a SMART configuration larger than the limit is refused (discovery_invalid), streamed without a Content-Length too', async () => {
  const server = http.createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' }); // chunked: no size declared
    res.write('{"issuer":"');
    res.end(`${'x'.repeat(8 * 1024)}"}`);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  try {
    const iss = `http://127.0.0.1:${(server.address() as AddressInfo).port}/fhir`;
    const discovery = new DiscoveryCache({ ttlSeconds: 60, timeoutMs: 5000, allowInsecureHttp: true, maxBytes: 4096 });
    await expect(discovery.get(iss, captureLogs().logger)).rejects.toMatchObject({ code: 'discovery_invalid', message: expect.stringMatching(/larger than 4096 bytes/) });
  } finally {
    await new Promise((r) => server.close(r));
  }
});
