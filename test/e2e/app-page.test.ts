/**
 * A real browser (Debian's Chromium) through the whole product on one origin, as `npm start` serves it: the
 * sandbox EHR's patient page → "Launch app" → sign in and consent at the authorization server → the app page,
 * which shows the patient's banner and resources read through /fhir under a strict CSP. Screenshots of each end
 * state go to test-artifacts/ (not committed).
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Browser, Page } from 'playwright-core';
import { loadConfig } from '../../src/config.js';
import { createApp } from '../../src/app.js';
import { createSandbox } from '../../src/sandbox/index.js';
import { captureLogs } from '../helpers/log-capture.js';
import { TEST_SESSION_SECRET } from '../helpers/bff.js';
import { ARTIFACTS_DIR, browserTestsEnabled, launchChromium } from '../helpers/chromium.js';

const enabled = browserTestsEnabled();
const d = enabled ? describe : describe.skip;

d('the app page in a real browser', () => {
  let server: http.Server;
  let url: string;
  let browser: Browser;
  let app: ReturnType<typeof createApp>;
  let sandbox: Awaited<ReturnType<typeof createSandbox>>;
  const pageErrors: string[] = [];

  beforeAll(async () => {
    server = http.createServer();
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    sandbox = await createSandbox({
      baseUrl: `${url}/sandbox`,
      clients: [{ client_id: 'smart-bff-dev', token_endpoint_auth_method: 'none', redirect_uris: [`${url}/callback`], launch_uri: `${url}/launch` }],
      accessTokenTtlSeconds: 2,
    });
    const config = await loadConfig({ NODE_ENV: 'test', PUBLIC_URL: url, SESSION_SECRET: TEST_SESSION_SECRET, SMART_ISS: sandbox.fhirBaseUrl, SMART_CLIENT_ID: 'smart-bff-dev', ALLOW_INSECURE_HTTP: '1', SANDBOX: 'off', TOKEN_REFRESH_SKEW_SECONDS: '0' });
    app = createApp({ config, logger: captureLogs().logger, sandbox });
    server.on('request', app);
    browser = await launchChromium();
  });

  afterAll(async () => {
    await browser?.close();
    server?.closeAllConnections();
    await new Promise<void>((r) => server?.close(() => r()));
  });

  async function launchFromSandbox(page: Page, patientName: string): Promise<void> {
    page.on('pageerror', (e) => pageErrors.push(e.message));
    page.on('console', (m) => { if (m.type() === 'error') pageErrors.push(m.text()); });
    await page.goto(`${url}/sandbox/`);
    await page.locator('tr', { hasText: patientName }).getByRole('button', { name: 'Launch app' }).click();
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('button', { name: 'Allow' }).click();
    await page.waitForURL(/\/app\?context=/);
  }

  test('EHR launch from the patient page ends on the app page with the banner and resources', async () => {
    const page = await browser.newPage();
    await launchFromSandbox(page, 'Amy Shaw');
    await page.locator('#banner-name').waitFor();
    expect(await page.locator('#banner-name').textContent()).toBe('Amy V. Shaw');
    expect(await page.locator('#banner-details').textContent()).toMatch(/Born 1987-02-20 · female · MRN \d+/);
    await page.locator('#conditions td').first().waitFor();
    expect(await page.locator('#conditions').textContent()).toMatch(/Diabetes mellitus type 2/);
    expect(await page.locator('#medications').textContent()).toMatch(/Metformin/);
    const rows = () => page.locator('#observations tr').count();
    expect(await rows()).toBe(11); // header + first page of 10
    await page.getByRole('button', { name: 'Load more' }).first().click();
    await page.locator('#observations tr').nth(11).waitFor(); // (a string predicate needs eval, which the page's CSP refuses)
    expect(await rows()).toBe(21);
    expect(pageErrors).toEqual([]);
    await page.screenshot({ path: `${ARTIFACTS_DIR}/app-page.png`, fullPage: true });
    await page.close();
  });

  test('when the EHR ends the launch, the page says the session ended and offers to launch again', async () => {
    const page = await browser.newPage();
    await launchFromSandbox(page, 'Daniel Adams');
    await page.locator('#banner-name').waitFor();
    const context = new URL(page.url()).searchParams.get('context')!;
    const tokens = (await app.locals.smart.tokenStore.get(context))!;
    await (await sandbox.provider.RefreshToken.find(tokens.refreshToken!))!.destroy(); // the EHR revokes the grant
    await page.waitForTimeout(2300); // the access token expires
    pageErrors.length = 0;
    await page.reload();
    await page.locator('#expired').waitFor({ state: 'visible' });
    expect(await page.locator('#expired h1').textContent()).toBe('Your session has ended');
    expect(await page.locator('#expired-message').textContent()).toMatch(/no longer accepts this launch/);
    expect(await page.locator('#banner').isVisible()).toBe(false);
    await page.screenshot({ path: `${ARTIFACTS_DIR}/session-expired.png`, fullPage: true });
    await page.locator('#relaunch').click();
    await page.waitForURL(/\/sandbox\/interaction\//); // a standalone launch starts at the EHR's sign-in
    await page.close();
  });
});
