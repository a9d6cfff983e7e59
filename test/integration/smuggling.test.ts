/**
 * Checklist #41 (request smuggling through /fhir): the browser's framing headers never reach the EHR, a GET, HEAD
 * or DELETE that declares a body is refused before any upstream call, and one client's request never changes the
 * bytes of the next client's request on the shared keep-alive connection to the EHR.
 *
 * Two real sessions (an attacker and a victim, each launched through the sandbox's authorization server) whose
 * FHIR base is a raw-socket FHIR server (test/helpers/raw-upstream.ts) that frames requests the way real servers
 * do: it honours Content-Length on any method, decodes chunked bodies, keeps connections alive and records every
 * byte per connection.
 */
import net from 'node:net';
import { startSandbox, type Sandbox } from '../../src/sandbox/index.js';
import { MemoryTokenStore } from '../../src/session/token-store.js';
import { authorize } from '../helpers/authorize.js';
import { Browser } from '../helpers/browser.js';
import { startBff, type StartedBff } from '../helpers/bff.js';
import { header, startRawUpstream, type ParsedRequest, type RawUpstream } from '../helpers/raw-upstream.js';
import { rawHttp } from '../helpers/raw-http.js';

let sandbox: Sandbox & { url: string };
let b: StartedBff;
/** The FHIR server of the current test: a fresh one per test, so one test's damage never explains another's. */
let upstream: RawUpstream;
const upstreams: RawUpstream[] = [];
const tokenStore = new MemoryTokenStore();

interface User { browser: Browser; context: string; cookie: string; patient: string }
let attacker: User;
let victim: User;
/** The victim's request exactly as the EHR sees it when nobody else is around. */
let victimAlone: Buffer;

const FRAMING = ['content-length', 'transfer-encoding', 'expect', 'te'];

async function launch(patient: string, bff: StartedBff = b): Promise<User> {
  const browser = new Browser();
  const start = await browser.get(`${bff.url}/launch?iss=${encodeURIComponent(sandbox.fhirBaseUrl)}&launch=${sandbox.createLaunch({ patient })}`);
  const done = await browser.get(await authorize(start.headers.get('location')!));
  const context = new URL(done.headers.get('location')!, bff.url).searchParams.get('context')!;
  return { browser, context, cookie: browser.cookieHeader(bff.url), patient };
}

/**
 * A BFF of its own with FHIR_PROXY_MAX_BODY `limit`, a launch into it (sessions are not shared between instances),
 * and a fresh upstream bound to that launch. The caller closes the BFF.
 */
async function cappedBff(limit: string): Promise<{ bff: StartedBff; user: User }> {
  const bff = await startBff({ SMART_ISS: sandbox.fhirBaseUrl, SMART_CLIENT_ID: 'public-app', FHIR_PROXY_MAX_BODY: limit }, { tokenStore });
  const user = await launch(sandbox.patients[0]!.id, bff);
  await freshUpstream('end');
  await tokenStore.set(user.context, { ...(await tokenStore.get(user.context))!, fhirBaseUrl: upstream.base }, 3600);
  return { bff, user };
}

/**
 * Points both launches at a new raw-socket FHIR server (the token is still the sandbox's) and records the
 * victim's request as that server sees it when nobody else is around.
 */
async function freshUpstream(answerAt: 'head' | 'end'): Promise<void> {
  upstream = await startRawUpstream({ answerAt });
  upstreams.push(upstream);
  for (const user of [attacker, victim]) {
    const tokens = (await tokenStore.get(user.context))!;
    await tokenStore.set(user.context, { ...tokens, fhirBaseUrl: upstream.base }, 3600);
  }
  const alone = await victimReads();
  expect(alone.status).toBe(200);
  victimAlone = alone.seen!.raw;
}

/** A request as the attacker writes it, byte for byte. */
function hostile(method: string, path: string, headers: string[], body = ''): string {
  return [`${method} /fhir${path} HTTP/1.1`, `Host: ${new URL(b.url).host}`, 'X-CSRF: 1', `Cookie: ${attacker.cookie}`, `X-SMART-Context: ${attacker.context}`, ...headers, '', body].join('\r\n');
}

const VICTIM_REQUEST_ID = 'victim-request-000001';

async function victimReads(): Promise<{ status: number; seen: ParsedRequest | undefined }> {
  const before = upstream.requests().length;
  const res = await fetch(`${b.url}/fhir/Patient/${victim.patient}`, {
    headers: { 'X-CSRF': '1', cookie: victim.cookie, 'X-SMART-Context': victim.context, 'x-request-id': VICTIM_REQUEST_ID, accept: 'application/fhir+json' },
  });
  await res.arrayBuffer();
  const seen = upstream.requests().slice(before).find((r) => header(r, 'x-request-id') === VICTIM_REQUEST_ID);
  return { status: res.status, seen };
}

async function expectVictimUntouched(): Promise<void> {
  const { status, seen } = await victimReads();
  expect(status).toBe(200);
  expect(seen).toBeDefined();
  expect(seen!.raw.toString('latin1')).toBe(victimAlone.toString('latin1'));
}

/** `bytesAfter`: what the EHR had received right after the answer (before anyone else's request). */
function expectRefusedBeforeUpstream(res: { status: number; headers: Record<string, string>; body: string }, bytesBefore: number, bytesAfter = upstream.bytesReceived()): void {
  expect(res.status).toBe(400);
  expect(res.headers['content-type']).toMatch(/^application\/fhir\+json/);
  if (res.body) { // (a HEAD answer has no body)
    const oo = JSON.parse(res.body);
    expect(oo.resourceType).toBe('OperationOutcome');
    expect(oo.issue[0].details.coding[0].code).toBe('request_body_not_allowed');
  }
  expect(bytesAfter).toBe(bytesBefore);
}

beforeAll(async () => {
  sandbox = await startSandbox({
    clients: [{ client_id: 'public-app', token_endpoint_auth_method: 'none', redirect_uris: [] }],
    redirectUriPattern: /^http:\/\/127\.0\.0\.1:\d+\/callback$/,
  } as Parameters<typeof startSandbox>[0]);
  b = await startBff({ SMART_ISS: sandbox.fhirBaseUrl, SMART_CLIENT_ID: 'public-app', FHIR_PROXY_TIMEOUT_MS: '5000', LAUNCH_RATE_LIMIT: '10000' }, { tokenStore });
  attacker = await launch(sandbox.patients[0]!.id);
  victim = await launch(sandbox.patients[1]!.id);
});

afterAll(async () => {
  await b?.close();
  for (const u of upstreams) await u.close();
  await sandbox?.close();
});

describe('#41 framing never crosses the proxy', () => {
  test('#41 a GET with Content-Length: 5 and a body is refused at once (it hung until the 504 timeout)', async () => {
    await freshUpstream('end'); // an EHR that reads the body before answering
    const bytes = upstream.bytesReceived();
    const res = await rawHttp(b.url, hostile('GET', '/Patient?x=1', ['Content-Length: 5'], 'hello'), { timeoutMs: 15000 });
    expectRefusedBeforeUpstream(res, bytes);
  });

  test("#41 another user's call is not broken: the victim's request reaches the EHR byte for byte as it would alone", async () => {
    await freshUpstream('head'); // an EHR that answers a GET without reading its body, then reads the body
    const bytes = upstream.bytesReceived();
    const res = await rawHttp(b.url, hostile('GET', '/Patient', ['Content-Length: 60'], 'x'.repeat(60)));
    const after = upstream.bytesReceived();
    // the victim's next read, from another session, right after
    await expectVictimUntouched();
    expect(upstream.errors()).toEqual([]);
    expectRefusedBeforeUpstream(res, bytes, after);
  });

  test('#41 no request escapes the FHIR base: a smuggled GET /sandbox/ is never seen by the EHR as a request', async () => {
    await freshUpstream('head');
    const smuggled = `GET /sandbox/ HTTP/1.1\r\nHost: ${new URL(upstream.url).host}\r\n\r\n`;
    const post = hostile('POST', '/Patient', ['Content-Type: application/fhir+json', 'X-Request-Id: attacker-post-000001', `Content-Length: ${smuggled.length}`], smuggled);
    // the POST alone, to learn the length of its head as the EHR sees it
    const alone = upstream.requests().length;
    expect((await rawHttp(b.url, post)).status).toBe(200);
    const headLength = upstream.requests()[alone]!.head.length;
    // the attack: a GET whose body length is that head's, then the POST whose body is a request
    const bytes = upstream.bytesReceived();
    const get = await rawHttp(b.url, hostile('GET', '/Patient', [`Content-Length: ${headLength}`], 'y'.repeat(headLength)));
    const after = upstream.bytesReceived();
    const before = upstream.requests().length;
    const res = await rawHttp(b.url, post);
    expect(upstream.requests().filter((r) => !r.target.startsWith('/fhir/')).map((r) => `${r.method} ${r.target}`)).toEqual([]);
    expect(res.status).toBe(200);
    expect(res.body).not.toContain('/sandbox/');
    const seen = upstream.requests().slice(before);
    expect(seen.map((r) => `${r.method} ${r.target}`)).toEqual(['POST /fhir/Patient']);
    expect(seen[0]!.body.toString('latin1')).toBe(smuggled); // the smuggled text stays a body
    expect(upstream.errors()).toEqual([]);
    expectRefusedBeforeUpstream(get, bytes, after);
  });

  test('#41 the pool cannot be exhausted: 260 pending GETs with Content-Length: 5 are all refused at once, none reaches the EHR', async () => {
    await freshUpstream('end');
    const bytes = upstream.bytesReceived();
    const connections = upstream.connections.length;
    // heads only: each promises 5 bytes of body it never sends
    const pending = await Promise.all(Array.from({ length: 260 }, (_, i) => rawHttp(b.url, hostile('GET', `/Observation?i=${i}`, ['Content-Length: 5']), { timeoutMs: 20000 })));
    expect(pending.map((r) => r.status)).toEqual(Array(260).fill(400));
    expect(upstream.bytesReceived()).toBe(bytes);
    expect(upstream.connections.length).toBe(connections);
    await expectVictimUntouched();
  }, 60000);

  test.each([
    ['HEAD with Content-Length: 5', () => hostile('HEAD', '/Patient', ['Content-Length: 5'], 'hello')],
    ['DELETE with Content-Length: 5', () => hostile('DELETE', '/Patient/1', ['Content-Length: 5'], 'hello')],
    ['GET with Transfer-Encoding: chunked', () => hostile('GET', '/Patient', ['Transfer-Encoding: chunked'], '5\r\nhello\r\n0\r\n\r\n')],
    ['DELETE with Transfer-Encoding: chunked', () => hostile('DELETE', '/Patient/1', ['Transfer-Encoding: chunked'], '0\r\n\r\n')],
    ['GET with Transfer-Encoding: gzip, chunked', () => hostile('GET', '/Patient', ['Transfer-Encoding: gzip, chunked'], '0\r\n\r\n')],
  ])('#41 %s → 400 before any upstream call; the next user is untouched', async (_name, request) => {
    await freshUpstream('head');
    const bytes = upstream.bytesReceived();
    const res = await rawHttp(b.url, request(), { timeoutMs: 15000 });
    const after = upstream.bytesReceived();
    await expectVictimUntouched();
    expectRefusedBeforeUpstream(res, bytes, after);
  });

  test('#41 Content-Length and Transfer-Encoding together → 400 (the parser refuses it) and nothing upstream', async () => {
    await freshUpstream('head');
    const bytes = upstream.bytesReceived();
    const res = await rawHttp(b.url, hostile('GET', '/Patient', ['Content-Length: 5', 'Transfer-Encoding: chunked'], '0\r\n\r\n'), { timeoutMs: 5000 });
    expect(res.status).toBe(400);
    expect(upstream.bytesReceived()).toBe(bytes);
  });

  test('#41 Content-Length: 0 is not a body: the GET goes through, with no framing header upstream', async () => {
    await freshUpstream('end');
    const before = upstream.requests().length;
    const res = await rawHttp(b.url, hostile('GET', '/Patient', ['Content-Length: 0', 'X-Request-Id: attacker-cl0-000001']));
    expect(res.status).toBe(200);
    const [seen] = upstream.requests().slice(before);
    expect(seen!.headers.map(([n]) => n).filter((n) => FRAMING.includes(n))).toEqual([]);
    expect(seen!.body.length).toBe(0);
  });

  test('#41 TE and Expect from the browser are not forwarded', async () => {
    await freshUpstream('end');
    const before = upstream.requests().length;
    const res = await rawHttp(b.url, hostile('GET', '/Patient', ['TE: trailers', 'Expect: 100-continue']));
    expect(res.status).toBe(200);
    const [seen] = upstream.requests().slice(before);
    expect(seen!.headers.map(([n]) => n).filter((n) => FRAMING.includes(n))).toEqual([]);
  });
});

describe('#41 bodies arrive exactly', () => {
  async function sent(request: string | Buffer, opts: { timeoutMs?: number } = {}) {
    await freshUpstream('end');
    const before = upstream.requests().length;
    const res = await rawHttp(b.url, request, opts);
    return { res, seen: upstream.requests().slice(before) };
  }

  test('#41 POST with Content-Length: the exact bytes, with a Content-Length that Node computed from them', async () => {
    const body = JSON.stringify({ resourceType: 'Patient', name: [{ text: 'Zoë Ñandú' }] });
    const { res, seen } = await sent(hostile('POST', '/Patient', ['Content-Type: application/fhir+json', `Content-Length: ${Buffer.byteLength(body)}`], body));
    expect(res.status).toBe(200);
    expect(seen).toHaveLength(1);
    expect(seen[0]!.body.toString('utf8')).toBe(body);
    expect(header(seen[0]!, 'content-length')).toBe(String(Buffer.byteLength(body)));
    expect(header(seen[0]!, 'transfer-encoding')).toBeUndefined();
    await expectVictimUntouched();
  });

  test('#41 POST chunked by the browser: the exact bytes, sent with an exact Content-Length (no chunked framing for small bodies)', async () => {
    const { res, seen } = await sent(hostile('POST', '/Patient', ['Content-Type: application/fhir+json', 'Transfer-Encoding: chunked'], '3\r\n{"r\r\n14\r\nesourceType":"Patien\r\n3\r\nt"}\r\n0\r\n\r\n'));
    expect(res.status).toBe(200);
    expect(seen).toHaveLength(1);
    expect(seen[0]!.body.toString()).toBe('{"resourceType":"Patient"}');
    expect(header(seen[0]!, 'content-length')).toBe('26');
    expect(header(seen[0]!, 'transfer-encoding')).toBeUndefined();
    await expectVictimUntouched();
  });

  test('#41 PUT with Expect: 100-continue: the browser gets its 100, the EHR gets the body and no Expect', async () => {
    const body = '{"resourceType":"Patient","id":"1"}';
    const { res, seen } = await sent(hostile('PUT', '/Patient/1', ['Content-Type: application/fhir+json', 'Expect: 100-continue', `Content-Length: ${body.length}`], body));
    expect(res.status).toBe(200);
    expect(seen[0]!.body.toString()).toBe(body);
    expect(header(seen[0]!, 'expect')).toBeUndefined();
  });

  test('#41 a large body chunked by the browser streams with Node\'s own chunked framing, byte for byte', async () => {
    const big = Buffer.alloc(2 * 1024 * 1024 + 12345, 'a');
    for (let i = 0; i < big.length; i += 4099) big[i] = 0x30 + (i % 10);
    const chunks: Buffer[] = [];
    for (let i = 0; i < big.length; i += 65536) {
      const part = big.subarray(i, i + 65536);
      chunks.push(Buffer.from(`${part.length.toString(16)}\r\n`), part, Buffer.from('\r\n'));
    }
    const request = Buffer.concat([Buffer.from(hostile('PATCH', '/Binary/1', ['Content-Type: application/octet-stream', 'Transfer-Encoding: chunked'])), ...chunks, Buffer.from('0\r\n\r\n')]);
    const { res, seen } = await sent(request, { timeoutMs: 20000 });
    expect(res.status).toBe(200);
    expect(seen).toHaveLength(1);
    expect(seen[0]!.body.equals(big)).toBe(true);
    expect(header(seen[0]!, 'content-length')).toBeUndefined();
    expect(header(seen[0]!, 'transfer-encoding')).toBe('chunked');
    await expectVictimUntouched();
  }, 30000);

  test('#41 a body the browser cuts short is never sent upstream (no partial request on a shared connection)', async () => {
    await freshUpstream('end');
    const bytes = upstream.bytesReceived();
    await rawHttp(b.url, hostile('POST', '/Patient', ['Content-Type: application/fhir+json', 'Content-Length: 100'], '{"resourceType":'), { hangUp: true });
    await new Promise((r) => setTimeout(r, 300));
    expect(upstream.bytesReceived()).toBe(bytes);
    await expectVictimUntouched();
  });

  test('#41 a large body the browser cuts short mid-stream: the EHR sees the connection end inside the body, never a complete request', async () => {
    await freshUpstream('end');
    const requests = upstream.requests().length;
    const bytes = upstream.bytesReceived();
    // 1.5 MiB of a 3 MiB body: past the size read whole, so it streams; then the browser goes away
    const part = Buffer.alloc(1536 * 1024, 'a');
    const socket = net.connect(Number(new URL(b.url).port), new URL(b.url).hostname);
    socket.on('error', () => undefined);
    socket.write(Buffer.concat([Buffer.from(hostile('PATCH', '/Binary/1', ['Content-Type: application/octet-stream', `Content-Length: ${3 * 1024 * 1024}`])), part]));
    for (let i = 0; i < 200 && upstream.bytesReceived() - bytes < 1024 * 1024; i++) await new Promise((r) => setTimeout(r, 20));
    expect(upstream.bytesReceived() - bytes).toBeGreaterThanOrEqual(1024 * 1024); // the body was on its way to the EHR
    socket.destroy();
    await new Promise((r) => setTimeout(r, 300));
    expect(upstream.requests().length).toBe(requests); // it never became a request
    expect(upstream.connections.filter((c) => !c.closed && c.requests.length === 0 && c.errors.length === 0)).toEqual([]);
    await expectVictimUntouched();
  });

  test('#41 a streamed body that passes FHIR_PROXY_MAX_BODY on the way → 413, and the EHR never gets a complete request', async () => {
    const { bff: capped, user } = await cappedBff('2mb');
    try {
      const requests = upstream.requests().length;
      const bytes = upstream.bytesReceived();
      // 3 MiB in 64 KiB chunks, no length declared: it streams past 1 MiB, and past the cap at 2 MiB
      const block = Buffer.alloc(65536, 'b');
      const body = Buffer.concat(Array.from({ length: 48 }, () => Buffer.concat([Buffer.from('10000\r\n'), block, Buffer.from('\r\n')])));
      const head = ['PATCH /fhir/Binary/1 HTTP/1.1', 'Host: x', 'X-CSRF: 1', `Cookie: ${user.cookie}`, `X-SMART-Context: ${user.context}`, 'Content-Type: application/octet-stream', 'Transfer-Encoding: chunked', '', ''].join('\r\n');
      const res = await rawHttp(capped.url, Buffer.concat([Buffer.from(head), body, Buffer.from('0\r\n\r\n')]), { timeoutMs: 20000 });
      expect(res.status).toBe(413);
      await new Promise((r) => setTimeout(r, 300));
      expect(upstream.bytesReceived() - bytes).toBeGreaterThan(1024 * 1024); // it was streaming when the cap was passed
      expect(upstream.requests().length).toBe(requests); // and the EHR never saw it end
    } finally {
      await capped.close();
    }
  }, 30000);

  test('#41 over FHIR_PROXY_MAX_BODY → 413, whether declared or streamed', async () => {
    const { bff: small, user } = await cappedBff('1kb');
    try {
      const head = ['Host: x', 'X-CSRF: 1', `Cookie: ${user.cookie}`, `X-SMART-Context: ${user.context}`, 'Content-Type: application/fhir+json'];
      const bytes = upstream.bytesReceived();
      const declared = await rawHttp(small.url, ['POST /fhir/Patient HTTP/1.1', ...head, 'Content-Length: 2000', '', 'x'.repeat(2000)].join('\r\n'));
      expect(declared.status).toBe(413);
      const streamed = await rawHttp(small.url, ['POST /fhir/Patient HTTP/1.1', ...head, 'Transfer-Encoding: chunked', '', `7d0\r\n${'x'.repeat(2000)}\r\n0\r\n\r\n`].join('\r\n'));
      expect(streamed.status).toBe(413);
      expect(upstream.bytesReceived()).toBe(bytes);
    } finally {
      await small.close();
    }
  });

  test('#41 after every case above, each connection to the EHR parsed cleanly into exactly the requests the proxy meant to send', () => {
    expect(upstreams.length).toBeGreaterThan(10);
    let unfinished = 0;
    for (const u of upstreams) {
      expect(u.errors()).toEqual([]);
      for (const conn of u.connections) {
        const framed = conn.requests.reduce((n, r) => n + r.raw.length, 0);
        for (const r of conn.requests) expect(r.target.startsWith('/fhir/')).toBe(true);
        if (framed === conn.raw.length) continue; // no stray bytes: nothing was read as another request's body
        // The only other ending: one last request begun and never finished, on a connection the proxy closed inside
        // its body (the two streamed bodies above, cut short by the browser and stopped at the cap).
        unfinished++;
        expect(conn.closed).toBe(true);
        expect(conn.raw.subarray(framed).toString('latin1')).toMatch(/^PATCH \/fhir\/Binary\/1 HTTP\/1\.1\r\n/);
      }
    }
    expect(unfinished).toBe(2);
  });
});
