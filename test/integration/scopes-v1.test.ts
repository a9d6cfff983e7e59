/**
 * Scopes never widen: a launch against a server that advertises only SMART v1 scopes (the sandbox's real
 * oidc-provider with permission-v2 taken out of its SMART configuration). What the authorization endpoint is
 * asked for is what was configured, converted exactly, or less; every scope narrowed or left out is named in a
 * launch.scope_dropped warning with the reason, filters included.
 */
import { startSandbox, type Sandbox } from '../../src/sandbox/index.js';
import { authorize } from '../helpers/authorize.js';
import { Browser } from '../helpers/browser.js';
import { startBff, type StartedBff } from '../helpers/bff.js';
import { json } from '../helpers/json.js';

let sandbox: Sandbox & { url: string };
const bffs: StartedBff[] = [];

beforeAll(async () => {
  sandbox = await startSandbox({
    clients: [{ client_id: 'public-app', token_endpoint_auth_method: 'none', redirect_uris: [] }],
    redirectUriPattern: /^http:\/\/127\.0\.0\.1:\d+\/callback$/,
    smartConfiguration: (doc) => ({ ...doc, capabilities: (doc.capabilities as string[]).filter((c) => c !== 'permission-v2') }),
  });
});
afterAll(async () => {
  for (const b of bffs) await b.close();
  await sandbox?.close();
});

const CONFIGURED = [
  'openid', 'fhirUser', 'online_access',
  'patient/Patient.rs', // exact: .read
  'patient/Observation.s', // search alone: .read would add read by id
  'patient/Condition.rs?category=problem-list-item', // a filter v1 cannot carry
  'patient/MedicationRequest.crs', // .read, without create (.write would add update and delete)
  'patient/AllergyIntolerance.cud', // exact: .write
  'patient/Encounter.r', // read alone: .read would add search
].join(' ');

test('the authorization endpoint is asked for nothing wider than configured; each scope narrowed or left out is a warning naming it', async () => {
  const b = await startBff({ SMART_ISS: sandbox.fhirBaseUrl, SMART_CLIENT_ID: 'public-app', SMART_SCOPE: CONFIGURED });
  bffs.push(b);
  const browser = new Browser();
  const start = await browser.get(`${b.url}/launch?iss=${encodeURIComponent(sandbox.fhirBaseUrl)}&launch=${sandbox.createLaunch({ patient: sandbox.patients[0]!.id })}`);
  expect(start.status).toBe(302);
  const sent = new URL(start.headers.get('location')!).searchParams.get('scope')!.split(' ');
  expect(sent).toEqual(['launch', 'openid', 'fhirUser', 'online_access', 'patient/Patient.read', 'patient/MedicationRequest.read', 'patient/AllergyIntolerance.write']);

  const warnings = b.logs.find('launch.scope_dropped');
  expect(warnings.map((w) => [w.scope, w.sent_instead, w.level])).toEqual([
    ['patient/Observation.s', null, 'warn'],
    ['patient/Condition.rs?category=problem-list-item', null, 'warn'],
    ['patient/MedicationRequest.crs', 'patient/MedicationRequest.read', 'warn'],
    ['patient/Encounter.r', null, 'warn'],
  ]);
  const byScope = Object.fromEntries(warnings.map((w) => [w.scope, String(w.msg)]));
  expect(byScope['patient/Condition.rs?category=problem-list-item']).toMatch(/not requested: .*no filters: patient\/Condition\.read would grant every Condition resource, not only those matching \?category=problem-list-item/);
  expect(byScope['patient/Observation.s']).toMatch(/not requested: .*no v1 scope grants search \(s\) without more \(v1 \.read would also grant read \(r\)\)/);
  expect(byScope['patient/MedicationRequest.crs']).toMatch(/narrowed to patient\/MedicationRequest\.read: .*create \(c\)/);
  // every warning shares the launch's id with the redirect it explains
  const launchId = b.logs.find('authorize.redirect')[0]!.launchId;
  for (const w of warnings) expect(w.launchId).toBe(launchId);

  // the launch completes with what was asked for
  expect((await browser.get(await authorize(start.headers.get('location')!))).status).toBe(302);
  const session = await json(await browser.get(`${b.url}/api/session`, { 'X-CSRF': '1' }));
  expect(String(session.requested_scopes).split(' ')).toEqual(sent);
  for (const s of String(session.granted_scopes).split(' ')) expect(sent).toContain(s);
});

test('a v2 server gets the configured scopes as they are, filters included, and no warning', async () => {
  const v2 = await startSandbox({
    clients: [{ client_id: 'public-app', token_endpoint_auth_method: 'none', redirect_uris: [] }],
    redirectUriPattern: /^http:\/\/127\.0\.0\.1:\d+\/callback$/,
  });
  try {
    const b = await startBff({ SMART_ISS: v2.fhirBaseUrl, SMART_CLIENT_ID: 'public-app', SMART_SCOPE: CONFIGURED });
    bffs.push(b);
    const start = await new Browser().get(`${b.url}/launch?iss=${encodeURIComponent(v2.fhirBaseUrl)}&launch=${v2.createLaunch({ patient: v2.patients[0]!.id })}`);
    expect(new URL(start.headers.get('location')!).searchParams.get('scope')).toBe(`launch ${CONFIGURED}`);
    expect(b.logs.find('launch.scope_dropped')).toEqual([]);
  } finally {
    await v2.close();
  }
});
