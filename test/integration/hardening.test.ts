/**
 * Production behaviour of one instance: cookie attributes (default and embedded modes, behind a proxy header
 * and without), a spoofed X-Forwarded-Host, the framed-launch cookie check, rate limits, idle and absolute
 * session timeouts, security headers, and SIGTERM with a request in flight.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { startSandbox, type Sandbox } from '../../src/sandbox/index.js';
import { authorize } from '../helpers/authorize.js';
import { Browser } from '../helpers/browser.js';
import { startBff, type StartedBff, TEST_SESSION_SECRET } from '../helpers/bff.js';
import { json } from '../helpers/json.js';
import { freePort } from '../helpers/redis.js';
import { startServerProcess } from '../helpers/server-process.js';

const CSRF = { 'X-CSRF': '1' };
let sandbox: Sandbox & { url: string };
const started: StartedBff[] = [];

beforeAll(async () => {
  sandbox = await startSandbox({
    clients: [{ client_id: 'public-app', token_endpoint_auth_method: 'none', redirect_uris: [] }],
    redirectUriPattern: /^(http:\/\/127\.0\.0\.1:\d+|https:\/\/app\.example\.org)\/callback$/,
  });
});
afterAll(async () => {
  for (const b of started) await b.close();
  await sandbox?.close();
});

async function bff(env: Record<string, string> = {}): Promise<StartedBff> {
  const b = await startBff({ SMART_ISS: sandbox.fhirBaseUrl, SMART_CLIENT_ID: 'public-app', ...env });
  started.push(b);
  return b;
}

describe('session and launch cookies', () => {
  const viaRouter = { 'x-forwarded-proto': 'https' };

  /** A standalone launch behind a TLS-terminating router (X-Forwarded-Proto: https), through to the callback. */
  async function launchBehindRouter(b: StartedBff) {
    const login = await fetch(`${b.url}/login`, { headers: viaRouter, redirect: 'manual' });
    expect(login.status).toBe(302);
    const launchCookie = login.headers.getSetCookie().find((c) => c.startsWith('__Host-smart-bff-launch='));
    const sessionAtLogin = login.headers.getSetCookie().find((c) => c.startsWith('__Host-smart-bff='));
    const cb = new URL(await authorize(login.headers.get('location')!, { patient: sandbox.patients[0]!.id }));
    expect(cb.origin).toBe('https://app.example.org');
    const done = await fetch(`${b.url}/callback${cb.search}`, { headers: { ...viaRouter, cookie: launchCookie?.split(';')[0] ?? '', accept: 'application/json' }, redirect: 'manual' });
    const sessionCookie = done.headers.getSetCookie().find((c) => c.startsWith('__Host-smart-bff='));
    return { login, launchCookie, sessionAtLogin, done, sessionCookie };
  }

  function expectHardened(cookie: string | undefined, sameSite: 'Lax' | 'None'): void {
    expect(cookie).toBeDefined();
    expect(cookie).toMatch(/; Path=\//);
    expect(cookie).toMatch(/; HttpOnly/);
    expect(cookie).toMatch(/; Secure/);
    expect(cookie).toMatch(new RegExp(`; SameSite=${sameSite}`));
    expect(cookie).not.toMatch(/Domain=/i);
    if (sameSite === 'Lax') expect(cookie).not.toMatch(/Partitioned/);
    else expect(cookie).toMatch(/; Partitioned/);
  }

  test('behind a TLS-terminating router: __Host- prefix, Secure, HttpOnly, Path=/, SameSite=Lax, no Domain (launch cookie at /login, session cookie at the callback)', async () => {
    const b = await bff({ PUBLIC_URL: 'https://app.example.org', TRUST_PROXY: '1' });
    const l = await launchBehindRouter(b);
    expectHardened(l.launchCookie, 'Lax');
    expect(l.launchCookie).toMatch(/; Max-Age=660/); // LAUNCH_TTL_SECONDS and a minute of grace
    expect(l.sessionAtLogin).toBeUndefined(); // a launch in progress is not a session
    expect(l.done.status).toBe(302);
    expectHardened(l.sessionCookie, 'Lax');
  });

  test('Heroku is detected (DYNO): trust proxy is on without configuring it', async () => {
    const b = await bff({ PUBLIC_URL: 'https://app.example.org', DYNO: 'web.1' });
    const l = await launchBehindRouter(b);
    expect(l.launchCookie).toBeDefined();
    expect(l.done.status).toBe(302);
    expect(l.sessionCookie).toBeDefined();
  });

  test('without trust proxy a plain-http hop gets no Secure cookie (the misconfiguration the router setting fixes)', async () => {
    const b = await bff({ PUBLIC_URL: 'https://app.example.org' });
    const res = await fetch(`${b.url}/login`, { headers: viaRouter, redirect: 'manual' });
    expect(res.headers.getSetCookie()).toEqual([]);
    // ...so the launch ends at the cookie diagnosis, and the operator is told why (hostile-inputs.test.ts #24)
    const l = await launchBehindRouter(b);
    expect(l.done.status).toBe(400);
    expect((await json(l.done)).error).toBe('session_cookie_missing');
  });

  test('embedded mode: SameSite=None; Secure; Partitioned', async () => {
    const b = await bff({ PUBLIC_URL: 'https://app.example.org', TRUST_PROXY: '1', COOKIE_MODE: 'embedded' });
    const l = await launchBehindRouter(b);
    expectHardened(l.launchCookie, 'None');
    expect(l.done.status).toBe(302);
    expectHardened(l.sessionCookie, 'None');
    const page = await fetch(`${b.url}/`, { headers: viaRouter });
    expect(page.headers.get('content-security-policy')).toMatch(/frame-ancestors \*/);
    expect(page.headers.get('x-frame-options')).toBeNull();
  });

  test('a spoofed X-Forwarded-Host changes nothing: redirect_uri comes from PUBLIC_URL', async () => {
    const b = await bff({ PUBLIC_URL: 'https://app.example.org', TRUST_PROXY: '1' });
    const res = await fetch(`${b.url}/login`, { headers: { 'x-forwarded-proto': 'https', 'x-forwarded-host': 'evil.example', host: 'evil.example' }, redirect: 'manual' });
    const u = new URL(res.headers.get('location')!);
    expect(u.searchParams.get('redirect_uri')).toBe('https://app.example.org/callback');
  });
});

describe('security headers', () => {
  test('strict CSP without inline scripts, no-store on session state, no caching of the app page', async () => {
    const b = await bff();
    const page = await fetch(`${b.url}/app`);
    const csp = page.headers.get('content-security-policy')!;
    expect(csp).toMatch(/script-src 'self'/);
    expect(csp).not.toMatch(/unsafe-inline/);
    expect(csp).toMatch(/frame-ancestors 'self'/);
    expect(page.headers.get('cache-control')).toBe('no-store');
    expect(page.headers.get('x-frame-options')).toBe('SAMEORIGIN');
    expect(await page.text()).not.toMatch(/<script>(?!<\/script>)|<script [^>]*>[^<]+<\/script>/);
  });
});

describe('a launch inside the EHR frame', () => {
  test('cookie comes back: the check passes on to the authorization server', async () => {
    const b = await bff();
    const browser = new Browser();
    const launch = sandbox.createLaunch({ patient: sandbox.patients[0]!.id });
    const first = await browser.get(`${b.url}/launch?iss=${encodeURIComponent(sandbox.fhirBaseUrl)}&launch=${launch}`, { 'sec-fetch-dest': 'iframe' });
    expect(first.status).toBe(302);
    expect(first.headers.get('location')).toMatch(/^\/launch\/continue\?t=/);
    const second = await browser.get(new URL(first.headers.get('location')!, b.url).href, { 'sec-fetch-dest': 'iframe' });
    expect(second.status).toBe(302);
    const authz = second.headers.get('location')!;
    expect(authz.startsWith(`${sandbox.url}/auth/auth?`)).toBe(true);
    expect((await browser.get(await authorize(authz))).status).toBe(302);
  });

  test('cookie blocked: a page that says so and offers the launch in a new window, before the launch code is spent', async () => {
    const b = await bff();
    const launch = sandbox.createLaunch({ patient: sandbox.patients[0]!.id });
    const first = await fetch(`${b.url}/launch?iss=${encodeURIComponent(sandbox.fhirBaseUrl)}&launch=${launch}`, { headers: { 'sec-fetch-dest': 'iframe' }, redirect: 'manual' });
    // the browser drops the cookie: the next request arrives without it
    const second = await fetch(new URL(first.headers.get('location')!, b.url), { headers: { 'sec-fetch-dest': 'iframe' }, redirect: 'manual' });
    expect(second.status).toBe(400);
    const html = await second.text();
    expect(html).toMatch(/did not send this app's cookie back/);
    expect(html).toMatch(/COOKIE_MODE=embedded/);
    const link = /id="open-top-level" class="button" href="([^"]+)" target="_blank"/.exec(html)![1]!.replace(/&amp;/g, '&');
    expect(new URL(link, b.url).searchParams.get('iss')).toBe(sandbox.fhirBaseUrl);
    expect(new URL(link, b.url).searchParams.get('launch')).toBe(launch);
    // in a top-level window (no Sec-Fetch-Dest: iframe) the same launch goes straight to the EHR
    const top = await new Browser().get(new URL(link, b.url).href);
    expect(top.headers.get('location')!.startsWith(`${sandbox.url}/auth/auth?`)).toBe(true);
  });

  test('a callback without the cookie set at launch says what happened', async () => {
    const b = await bff();
    const res = await fetch(`${b.url}/callback?code=abc&state=xyz`);
    expect(res.status).toBe(400);
    expect(await res.text()).toMatch(/blocks third-party cookies/);
  });
});

describe('rate limits', () => {
  test('/login beyond LAUNCH_RATE_LIMIT per minute → 429 with a clear message', async () => {
    const b = await bff({ LAUNCH_RATE_LIMIT: '3' });
    const statuses: number[] = [];
    for (let i = 0; i < 5; i++) statuses.push((await fetch(`${b.url}/login`, { redirect: 'manual', headers: { accept: 'application/json' } })).status);
    expect(statuses).toEqual([302, 302, 302, 429, 429]);
    const res = await fetch(`${b.url}/launch?iss=x&launch=y`, { headers: { accept: 'application/json' } });
    expect(res.status).toBe(429);
    expect((await json(res)).error).toBe('rate_limited');
    expect(res.headers.get('ratelimit-policy')).toBeTruthy();
  });
});

describe('session timeouts on the server', () => {
  async function launched(b: StartedBff) {
    const browser = new Browser();
    const start = await browser.get(`${b.url}/launch?iss=${encodeURIComponent(sandbox.fhirBaseUrl)}&launch=${sandbox.createLaunch({ patient: sandbox.patients[0]!.id })}`);
    await browser.get(await authorize(start.headers.get('location')!));
    return browser;
  }
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

  test('idle: no request for SESSION_IDLE_MINUTES ends the session', async () => {
    // 3 s, with 2 s of room around each 1 s pause for a busy CI machine
    const b = await bff({ SESSION_IDLE_MINUTES: '0.05' });
    const browser = await launched(b);
    // a request a second keeps it alive past its idle length counted from creation
    for (let second = 0; second <= 3; second++) {
      if (second > 0) await sleep(1000);
      expect((await browser.get(`${b.url}/api/session`, CSRF)).status).toBe(200);
    }
    await sleep(4000);
    expect((await browser.get(`${b.url}/api/session`, CSRF)).status).toBe(401);
  });

  test('absolute: a session older than SESSION_MAX_HOURS ends however active it is', async () => {
    const b = await bff({ SESSION_MAX_HOURS: '0.0006' }); // 2.16 s
    const browser = await launched(b);
    const statuses: number[] = [];
    for (let i = 0; i < 6; i++) {
      statuses.push((await browser.get(`${b.url}/api/session`, CSRF)).status);
      await sleep(500);
    }
    expect(statuses.slice(0, 2)).toEqual([200, 200]);
    expect(statuses.at(-1)).toBe(401);
  });
});

describe('graceful shutdown', () => {
  test('SIGTERM: the request in flight finishes, new connections are refused, the process exits 0', async () => {
    // a slow EHR: its discovery answers after 1.5 s
    const slow = http.createServer((req, res) => {
      setTimeout(() => {
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify({
          authorization_endpoint: 'http://127.0.0.1:1/authorize', token_endpoint: 'http://127.0.0.1:1/token', capabilities: ['launch-ehr'],
          grant_types_supported: ['authorization_code'], code_challenge_methods_supported: ['S256'],
        }));
      }, 1500);
    });
    await new Promise<void>((r) => slow.listen(0, '127.0.0.1', r));
    const iss = `http://127.0.0.1:${(slow.address() as AddressInfo).port}/fhir`;
    const port = await freePort();
    const proc = await startServerProcess({ PUBLIC_URL: `http://127.0.0.1:${port}`, SESSION_SECRET: TEST_SESSION_SECRET, SMART_ISS: iss, SMART_CLIENT_ID: 'x', ALLOW_INSECURE_HTTP: '1', SANDBOX: 'off' }, port);
    try {
      const inflight = fetch(`${proc.url}/launch?iss=${encodeURIComponent(iss)}&launch=abc`, { redirect: 'manual' });
      await new Promise((r) => setTimeout(r, 300));
      const exited = proc.stop('SIGTERM');
      await new Promise((r) => setTimeout(r, 200));
      await expect(fetch(`${proc.url}/healthz`)).rejects.toThrow();
      const res = await inflight;
      expect(res.status).toBe(302);
      expect(await exited).toBe(0);
      expect(proc.output()).toMatch(/"event":"server.stopping","signal":"SIGTERM"/);
    } finally {
      await proc.stop('SIGKILL');
      slow.close();
    }
  }, 20000);
});
