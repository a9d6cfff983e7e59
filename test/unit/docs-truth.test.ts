/**
 * What the docs say about cookies and the anti-forgery header, checked against the code (review L7): every cookie
 * the server sets is named in deploy.md's cookie section (https and http names), and the README's X-CSRF rule
 * matches which routes ask for it.
 */
import { readFileSync } from 'node:fs';
import { launchCookieName } from '../../src/session/launch-cookie.js';
import { sessionCookieName } from '../../src/session/session-middleware.js';
import { operatorCookieName } from '../../src/admin/operator-auth.js';

const ROOT = new URL('../../', import.meta.url);
const deploy = readFileSync(new URL('docs/deploy.md', ROOT), 'utf8');
const readme = readFileSync(new URL('README.md', ROOT), 'utf8');
const app = readFileSync(new URL('src/app.ts', ROOT), 'utf8');

test('deploy.md names every cookie the server sets, on https and on http, and how many there are', () => {
  const at = deploy.indexOf('cookies, all HttpOnly');
  const section = deploy.slice(deploy.lastIndexOf('\n', at) + 1, deploy.indexOf('## The EHR frame'));
  expect(section).toMatch(/^Three cookies/);
  for (const publicUrl of ['https://app.example', 'http://localhost:3000']) {
    const config = { publicUrl, cookieMode: 'default' as const };
    for (const name of [launchCookieName(config), sessionCookieName(config), operatorCookieName(config)]) expect([publicUrl, name, section.includes(`\`${name}\``)]).toEqual([publicUrl, name, true]);
  }
});

test('README: X-CSRF on the session routes, not on /api/bulk-data (mounted before the /api check, bearer only)', () => {
  expect(app.indexOf("app.use('/api/bulk-data'")).toBeGreaterThan(-1);
  expect(app.indexOf("app.use('/api/bulk-data'")).toBeLessThan(app.indexOf("app.use('/api', requireCsrfHeader)"));
  expect(readme).not.toMatch(/`\/api\/\*`, `\/fhir\/\*` and `POST \/logout` require the header/);
  expect(readme).toMatch(/`\/api\/bulk-data` is for programs: it uses no cookie, only\s+`Authorization: Bearer <ADMIN_TOKEN>`, so it needs no `X-CSRF`/);
});
