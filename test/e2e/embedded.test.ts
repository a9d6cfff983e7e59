/**
 * The app inside an iframe of another site, in a real browser: the EHR page is served from 127.0.0.1 (with
 * the sandbox EHR), the app from https://localhost. With COOKIE_MODE=embedded (SameSite=None; Secure;
 * Partitioned) the launch completes inside the frame; in the default mode the app explains that it cannot run in
 * the frame and offers a top-level window, instead of failing with a state error or looping.
 */
import { spawnSync } from 'node:child_process';
import http from 'node:http';
import https from 'node:https';
import { mkdtempSync, readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser, Frame, Page } from 'playwright-core';
import { loadConfig } from '../../src/config.js';
import { createApp } from '../../src/app.js';
import { startSandbox, type Sandbox } from '../../src/sandbox/index.js';
import { captureLogs } from '../helpers/log-capture.js';
import { TEST_SESSION_SECRET } from '../helpers/bff.js';
import { ARTIFACTS_DIR, browserTestsEnabled, launchChromium } from '../helpers/chromium.js';

const d = browserTestsEnabled() ? describe : describe.skip;

function selfSignedLocalhost(): { key: Buffer; cert: Buffer } {
  const dir = mkdtempSync(join(tmpdir(), 'tls-'));
  const r = spawnSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1', '-subj', '/CN=localhost',
    '-addext', 'subjectAltName=DNS:localhost', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')]);
  if (r.status !== 0) throw new Error(`openssl failed: ${r.stderr}`);
  return { key: readFileSync(join(dir, 'key.pem')), cert: readFileSync(join(dir, 'cert.pem')) };
}

d('the app in a cross-site iframe', () => {
  let sandbox: Sandbox & { url: string };
  let ehrPage: http.Server;
  let ehrUrl: string;
  let browser: Browser;
  const apps: https.Server[] = [];
  const tls = selfSignedLocalhost();

  beforeAll(async () => {
    sandbox = await startSandbox({
      clients: [{ client_id: 'embedded-app', token_endpoint_auth_method: 'none', redirect_uris: [] }],
      redirectUriPattern: /^https:\/\/localhost:\d+\/callback$/,
    });
    // the EHR's own page, on the EHR's site (127.0.0.1), which shows the app in an iframe
    ehrPage = http.createServer((req, res) => {
      const src = new URL(req.url!, 'http://x').searchParams.get('app');
      if (!src) return void res.writeHead(204).end(); // favicon and the like
      res.setHeader('content-type', 'text/html');
      res.end(`<!doctype html><title>EHR</title><h1>EHR chart</h1><iframe id="app" src="${src.replace(/"/g, '&quot;')}" width="1000" height="700"></iframe>`);
    });
    await new Promise<void>((r) => ehrPage.listen(0, '127.0.0.1', r));
    ehrUrl = `http://127.0.0.1:${(ehrPage.address() as AddressInfo).port}/chart`;
    browser = await launchChromium(['--ignore-certificate-errors']);
  });

  afterAll(async () => {
    await browser?.close();
    for (const s of apps) { s.closeAllConnections(); s.close(); }
    ehrPage?.close();
    await sandbox?.close();
  });

  async function startApp(cookieMode: 'default' | 'embedded'): Promise<string> {
    const server = https.createServer(tls);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const url = `https://localhost:${(server.address() as AddressInfo).port}`;
    const config = await loadConfig({
      NODE_ENV: 'test', PUBLIC_URL: url, SESSION_SECRET: TEST_SESSION_SECRET, SMART_ISS: sandbox.fhirBaseUrl, SMART_CLIENT_ID: 'embedded-app',
      ALLOW_INSECURE_HTTP: '1', SANDBOX: 'off', COOKIE_MODE: cookieMode,
    });
    server.on('request', createApp({ config, logger: captureLogs().logger }));
    apps.push(server);
    return url;
  }

  async function openInFrame(page: Page, appUrl: string, patient: string): Promise<Frame> {
    const launch = sandbox.createLaunch({ patient });
    const src = `${appUrl}/launch?iss=${encodeURIComponent(sandbox.fhirBaseUrl)}&launch=${launch}`;
    await page.goto(`${ehrUrl}?app=${encodeURIComponent(src)}`);
    const frame = page.frameLocator('#app');
    await frame.locator('body').waitFor();
    return page.frames().find((f) => f.parentFrame() !== null)!;
  }

  test('embedded mode: the launch completes inside the frame and the app shows the patient', async () => {
    const appUrl = await startApp('embedded');
    const page = await browser.newPage();
    const errors: string[] = [];
    page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
    page.on('pageerror', (e) => errors.push(e.message));
    await openInFrame(page, appUrl, sandbox.patients[4]!.id);
    const frame = page.frameLocator('#app');
    await frame.getByRole('button', { name: 'Sign in' }).click();
    await frame.getByRole('button', { name: 'Allow' }).click();
    await frame.locator('#banner-name').waitFor({ timeout: 15000 }).catch(async (e) => {
      await page.screenshot({ path: `${ARTIFACTS_DIR}/embedded-mode-failed.png`, fullPage: true });
      console.error('frame urls', page.frames().map((f) => f.url()), 'page errors', errors);
      throw e;
    });
    expect(await frame.locator('#banner-name').textContent()).toBe('José L. García');
    expect(errors).toEqual([]);
    await frame.locator('#conditions td').first().waitFor();
    await page.screenshot({ path: `${ARTIFACTS_DIR}/embedded-mode.png`, fullPage: true });
    await page.close();
  });

  test('default mode: the frame explains why and offers a top-level window; no loop, no state error', async () => {
    const appUrl = await startApp('default');
    const page = await browser.newPage();
    page.setDefaultTimeout(8000);
    await openInFrame(page, appUrl, sandbox.patients[0]!.id);
    const frame = page.frameLocator('#app');
    await frame.getByRole('heading', { name: "This app cannot run inside the EHR's window here" }).waitFor({ timeout: 8000 }).catch(async (e) => {
      await page.screenshot({ path: `${ARTIFACTS_DIR}/default-mode-failed.png`, fullPage: true });
      console.error('frame urls', page.frames().map((f) => f.url()));
      throw e;
    });
    const link = frame.locator('#open-top-level');
    expect(await link.getAttribute('target')).toBe('_blank');
    await page.screenshot({ path: `${ARTIFACTS_DIR}/default-mode-in-frame.png`, fullPage: true });
    // the offered top-level window completes the launch
    const [popup] = await Promise.all([page.waitForEvent('popup'), link.click()]);
    await popup.getByRole('button', { name: /^(Sign in|Allow)$/ }).first().waitFor();
    if (await popup.getByRole('button', { name: 'Sign in' }).count()) await popup.getByRole('button', { name: 'Sign in' }).click();
    await popup.getByRole('button', { name: 'Allow' }).click();
    await popup.locator('#banner-name').waitFor({ timeout: 15000 });
    expect(await popup.locator('#banner-name').textContent()).toBe('Amy V. Shaw');
    await popup.screenshot({ path: `${ARTIFACTS_DIR}/default-mode-top-level.png`, fullPage: true });
    await page.close();
  });
});
