/**
 * More real-browser flows (Debian's Chromium): a standalone launch from /login, and two tabs with two patients in
 * one browser, each tab showing only its own patient after both launched.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { loadConfig } from '../../src/config.js';
import { createApp } from '../../src/app.js';
import { createSandbox } from '../../src/sandbox/index.js';
import { captureLogs } from '../helpers/log-capture.js';
import { TEST_SESSION_SECRET } from '../helpers/bff.js';
import { ARTIFACTS_DIR, browserTestsEnabled, launchChromium } from '../helpers/chromium.js';

const d = browserTestsEnabled() ? describe : describe.skip;

d('browser flows', () => {
  let server: http.Server;
  let url: string;
  let browser: Browser;
  let context: BrowserContext;

  beforeAll(async () => {
    server = http.createServer();
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const sandbox = await createSandbox({
      baseUrl: `${url}/sandbox`,
      clients: [{ client_id: 'smart-bff-dev', token_endpoint_auth_method: 'none', redirect_uris: [`${url}/callback`], launch_uri: `${url}/launch` }],
    });
    const config = await loadConfig({ NODE_ENV: 'test', PUBLIC_URL: url, SESSION_SECRET: TEST_SESSION_SECRET, SMART_ISS: sandbox.fhirBaseUrl, SMART_CLIENT_ID: 'smart-bff-dev', ALLOW_INSECURE_HTTP: '1', SANDBOX: 'off' });
    server.on('request', createApp({ config, logger: captureLogs().logger, sandbox }));
    browser = await launchChromium();
    context = await browser.newContext(); // one browser profile: one cookie jar for both tabs
  });

  afterAll(async () => {
    await context?.close();
    await browser?.close();
    server?.closeAllConnections();
    await new Promise<void>((r) => server?.close(() => r()));
  });

  async function signInAndAllow(page: Page, patient?: string): Promise<void> {
    // the EHR asks to sign in unless this browser already has a session there
    const first = page.getByRole('button', { name: /^(Sign in|Allow)$/ }).first();
    await first.waitFor();
    if ((await first.textContent()) === 'Sign in') await first.click();
    if (patient) await page.getByLabel(patient).check();
    await page.getByRole('button', { name: 'Allow' }).click();
    await page.waitForURL(/\/app\?context=/);
    await page.locator('#banner-name').waitFor();
  }

  test('standalone launch: /login, pick the patient at the EHR, the app shows them', async () => {
    const page = await context.newPage();
    await page.goto(`${url}/login`);
    await signInAndAllow(page, 'Susan Clark');
    expect(await page.locator('#banner-name').textContent()).toBe('Susan A. Clark');
    await page.screenshot({ path: `${ARTIFACTS_DIR}/standalone.png`, fullPage: true });
    await page.close();
  });

  test('two tabs, two patients: after both launched each tab shows only its own', async () => {
    const tabA = await context.newPage();
    const tabB = await context.newPage();
    tabA.setDefaultTimeout(8000);
    tabB.setDefaultTimeout(8000);
    await tabA.goto(`${url}/sandbox/`);
    await tabB.goto(`${url}/sandbox/`);
    // both launches start before either finishes
    await tabA.locator('tr', { hasText: 'Joseph Nichols' }).getByRole('button', { name: 'Launch app' }).click();
    await tabB.locator('tr', { hasText: 'José García' }).getByRole('button', { name: 'Launch app' }).click();
    await signInAndAllow(tabA);
    await signInAndAllow(tabB);
    // reload both: each keeps its own launch context
    for (const tab of [tabA, tabB]) {
      await tab.bringToFront();
      await tab.reload();
      await tab.locator('#banner-name').waitFor();
    }
    expect(await tabA.locator('#banner-name').textContent()).toBe('Joseph P. Nichols');
    expect(await tabB.locator('#banner-name').textContent()).toBe('José L. García');
    await tabA.locator('#conditions td').first().waitFor();
    await tabB.locator('#conditions td').first().waitFor();
    expect(await tabA.locator('#session-details').textContent()).toContain('smart-1186747');
    expect(await tabB.locator('#session-details').textContent()).toContain('smart-1213208');
    expect(await tabA.locator('body').textContent()).not.toContain('García');
    expect(await tabB.locator('body').textContent()).not.toContain('Nichols');
    await tabA.screenshot({ path: `${ARTIFACTS_DIR}/two-tabs-a.png`, fullPage: true });
    await tabB.screenshot({ path: `${ARTIFACTS_DIR}/two-tabs-b.png`, fullPage: true });
  });
});
