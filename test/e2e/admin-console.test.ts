/**
 * The operator console in a real browser (Debian's Chromium), on the real server entry point (src/server.ts as a
 * child process, as `npm start` runs it: the sandbox EHR, ADMIN_TOKEN, and the backend registration `sandbox` it
 * makes at startup):
 *  - a clinician's successful EHR launch (in the browser) and a launch that fails with a real invalid_grant; an
 *    operator signs in and reads both on the trace page, the failed one first with its diagnosis, filters to
 *    failures and opens the failed launch;
 *  - the operator starts a Group export against the sandbox from the form, watches its progress until it finishes,
 *    and downloads a file: NDJSON of the group's patients.
 * All under the app's strict CSP: the page reports no error and no refused script or style.
 */
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { parseLogText } from '../../src/launch-trace/log-lines.js';
import { storiesFromRecords } from '../../src/launch-trace/story.js';
import { failedLaunch } from '../helpers/launches.js';
import { freePort } from '../helpers/net.js';
import { startServerProcess, type ServerProcess } from '../helpers/server-process.js';
import { ARTIFACTS_DIR, browserTestsEnabled, launchChromium } from '../helpers/chromium.js';

const ADMIN = 'admin-token-0123456789-abcdefghij';
const d = browserTestsEnabled() ? describe : describe.skip;

d('the operator console in a real browser', () => {
  let server: ServerProcess;
  let browser: Browser;
  let operator: Page;
  let failedId: string;
  const pageErrors: string[] = [];

  beforeAll(async () => {
    const port = await freePort();
    server = await startServerProcess({ PUBLIC_URL: `http://127.0.0.1:${port}`, ADMIN_TOKEN: ADMIN, BULK_DATA_DIR: mkdtempSync(join(tmpdir(), 'e2e-bulk-')) }, port);
    browser = await launchChromium();
  }, 60000);

  afterAll(async () => {
    await browser?.close();
    await server?.stop();
  });

  function watch(page: Page): Page {
    page.on('pageerror', (e) => pageErrors.push(e.message));
    page.on('console', (m) => { if (m.type() === 'error') pageErrors.push(m.text()); });
    page.setDefaultTimeout(15000);
    return page;
  }

  test('a successful and a failed launch, then the trace page shows both: the failed one first, with its diagnosis', async () => {
    // a clinician launches from the EHR in the browser
    const clinician = watch(await (await browser.newContext()).newPage());
    await clinician.goto(`${server.url}/sandbox/`);
    await clinician.locator('tr', { hasText: 'Amy Shaw' }).getByRole('button', { name: 'Launch app' }).click();
    await clinician.getByRole('button', { name: 'Sign in' }).click();
    await clinician.getByRole('button', { name: 'Allow' }).click();
    await clinician.waitForURL(/\/app\?context=/);
    await clinician.locator('#banner-name').waitFor();
    // a launch whose code someone else redeemed first: a real invalid_grant
    const bad = await failedLaunch(server.url);

    // the operator, in another browser profile, signs in once
    operator = watch(await (await browser.newContext()).newPage());
    await operator.goto(`${server.url}/admin/launches`);
    await operator.waitForURL(/\/admin\/sign-in\?next=%2Fadmin%2Flaunches$/);
    await operator.getByLabel('Operator token').fill('not-the-token');
    await operator.getByRole('button', { name: 'Sign in' }).click();
    await operator.locator('#sign-in-error').waitFor();
    expect(await operator.locator('#sign-in-error').textContent()).toContain('not the operator token');
    expect(pageErrors).toEqual(['Failed to load resource: the server responded with a status of 401 (Unauthorized)']);
    pageErrors.length = 0;
    await operator.getByLabel('Operator token').fill(ADMIN);
    await operator.getByRole('button', { name: 'Sign in' }).click();
    await operator.waitForURL(/\/admin\/launches$/);
    expect(await operator.getByLabel('Operator token').count()).toBe(0);
    const cookies = await operator.context().cookies();
    expect(cookies.map((c) => [c.name, c.httpOnly, c.sameSite])).toEqual([['smart-bff.admin', true, 'Strict']]);
    // what page scripts can read holds no token: no readable cookie, nothing in storage
    const readable = await operator.evaluate(() => {
      const w = globalThis as unknown as { document: { cookie: string }; localStorage: Record<string, string>; sessionStorage: Record<string, string> };
      return { cookie: w.document.cookie, local: { ...w.localStorage }, session: { ...w.sessionStorage } };
    });
    expect(readable).toEqual({ cookie: '', local: {}, session: {} });

    const launches = operator.locator('details.launch');
    expect(await launches.count()).toBe(2);
    const failed = launches.nth(0);
    expect(await failed.getAttribute('class')).toContain('launch-failed');
    expect(await failed.getAttribute('open')).not.toBeNull();
    expect(await failed.locator('summary .badge').textContent()).toBe('Failed');
    expect(await failed.locator('.diagnosis h3').textContent()).toBe('What failed: The token endpoint refused the authorization code: invalid_grant');
    expect(await failed.locator('.diagnosis .causes li').first().textContent()).toContain('The code was already used');
    expect(await failed.locator('.fix').textContent()).toContain('Check, in this order: the redirect URI registered at the EHR is exactly');
    expect(await failed.locator('tr.step-failed').first().textContent()).toContain('token.response');
    expect(await failed.locator('tr.step-failed').first().isVisible()).toBe(true); // open: read at a glance
    const complete = launches.nth(1);
    expect(await complete.getAttribute('class')).toContain('launch-complete');
    expect(await complete.locator('tr.step').first().isVisible()).toBe(false);
    await complete.locator('summary').click();
    await complete.locator('tr.step').first().waitFor();
    expect(await complete.locator('tr.step').count()).toBe(8);
    expect(await complete.locator('tr.step').last().textContent()).toContain('launch.complete');
    await operator.screenshot({ path: `${ARTIFACTS_DIR}/admin-launches.png`, fullPage: true });
    // the same story as `smart-bff explain` tells from the server's stdout
    const onPage = await Promise.all((await launches.all()).map(async (l) => [(await l.getAttribute('id'))!.replace(/^launch-/, ''), (await l.getAttribute('class'))!.replace(/^launch launch-/, '')]));
    expect(storiesFromRecords(parseLogText(server.output()).records).map((st) => [st.id, st.outcome])).toEqual(onPage);

    await operator.locator('#filter-failed').click();
    await operator.waitForURL(/\?failed=1$/);
    expect(await operator.locator('details.launch').count()).toBe(1);
    await operator.getByRole('link', { name: 'Open this launch' }).click();
    await operator.waitForURL(/\/admin\/launches\/[A-Za-z0-9_-]{12}$/);
    failedId = operator.url().split('/').pop()!;
    expect(await operator.locator('h1').textContent()).toContain(`Launch ${failedId}`);
    expect(await operator.locator('.launch-facts').textContent()).toContain(bad.callbackRequestId!);
    expect(await operator.locator('tr.step-failed .step-details').first().textContent()).toContain('invalid_grant');
    expect(await operator.content()).not.toContain(bad.stolenTokens![0]!);
    await operator.screenshot({ path: `${ARTIFACTS_DIR}/admin-launch.png`, fullPage: true });
    expect(pageErrors).toEqual([]);
  }, 90000);

  test('an export from the form: started against the sandbox, its progress shown until it finishes, a file downloaded', async () => {
    const seen: { status: string; progress: string | null; filesDone: number }[] = [];
    operator.on('response', async (res) => {
      if (!res.url().endsWith('/admin/api/exports') || res.request().method() !== 'GET') return;
      const body = await res.json().catch(() => undefined) as { jobs: { status: string; progress: string | null; filesDone: number }[] } | undefined;
      if (body?.jobs[0]) seen.push(body.jobs[0]);
    });
    await operator.getByRole('link', { name: 'Exports' }).click();
    await operator.waitForURL(/\/admin\/exports$/);
    expect(await operator.locator('#registration option').allTextContents()).toEqual([`sandbox — ${server.url}/sandbox/fhir`]);
    await operator.locator('input[name="level"][value="group"]').check();
    await operator.locator('#group-id').fill('sandbox-cohort');
    await operator.locator('#types').fill('Patient, Observation');
    await operator.getByRole('button', { name: 'Start export' }).click();

    const row = operator.locator('#jobs-body tr').first();
    await row.waitFor();
    expect(await row.locator('td').nth(1).textContent()).toBe('Group sandbox-cohort · Patient, Observation');
    await row.locator('td.progress', { hasText: /server: \d+% done/ }).waitFor(); // the FHIR server's X-Progress, live
    await operator.screenshot({ path: `${ARTIFACTS_DIR}/admin-export-running.png`, fullPage: true });
    await operator.locator('#jobs-body tr[data-status="complete"]').first().waitFor({ timeout: 30000 });
    expect(await row.locator('td.progress').textContent()).toMatch(/^(\d+)\/\1 files · \d+ resources · done in [\d.]+ s$/);
    expect(seen.some((j) => j.status === 'running' && /% done/.test(j.progress ?? ''))).toBe(true);
    await operator.screenshot({ path: `${ARTIFACTS_DIR}/admin-export-complete.png`, fullPage: true });

    const [download] = await Promise.all([operator.waitForEvent('download'), row.getByRole('link', { name: 'Patient-1.ndjson' }).click()]);
    expect(download.suggestedFilename()).toBe('Patient-1.ndjson');
    const lines = readFileSync((await download.path())!, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { resourceType: string; id: string });
    expect(lines.map((r) => r.resourceType)).toEqual(['Patient', 'Patient', 'Patient']);
    expect(new Set(lines.map((r) => r.id)).size).toBe(3);
    expect(pageErrors).toEqual([]);
  }, 90000);

  test('signing out ends the console: its pages go back to the sign-in page', async () => {
    await operator.getByRole('button', { name: 'Sign out' }).click();
    await operator.waitForURL(/\/admin\/sign-in$/);
    await operator.goto(`${server.url}/admin/launches/${failedId}`);
    await operator.waitForURL(/\/admin\/sign-in\?next=/);
    expect(pageErrors).toEqual([]);
  }, 30000);
});
