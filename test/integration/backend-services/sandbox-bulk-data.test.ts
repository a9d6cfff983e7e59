/**
 * The sandbox's backend services, as a client meets them over real sockets: registering a backend client (a
 * pasted or POSTed JWKS; the keys directory), system-level tokens from the sandbox's own authorization server
 * (client_credentials + private_key_jwt), and the FHIR Bulk Data server: kick-off at system, Patient and Group
 * level, status polling, the manifest, NDJSON files, DELETE, and OperationOutcomes for every refusal.
 */
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as jose from 'jose';
import { startSandbox, type Sandbox } from '../../../src/sandbox/index.js';
import { parsePrivateKey, type ClientKey } from '../../../src/keys.js';
import { sampleResources } from '../../../src/sandbox/sample-data.js';
import { json } from '../../helpers/json.js';

let sandbox: Sandbox & { url: string };
let key: ClientKey;
let otherKey: ClientKey;
const keysDir = mkdtempSync(join(tmpdir(), 'sandbox-keys-'));

beforeAll(async () => {
  key = await parsePrivateKey(generateKeyPairSync('ec', { namedCurve: 'P-384' }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString());
  otherKey = await parsePrivateKey(generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString());
  sandbox = await startSandbox({
    clients: [{ client_id: 'launch-app', token_endpoint_auth_method: 'none', redirect_uris: ['http://127.0.0.1/cb'] }],
    bulkExport: { delayMs: 1000 }, keysDir,
  });
  sandbox.registerBackendClient({ clientId: 'exporter', jwks: { keys: [key.publicJwk] } });
  sandbox.registerBackendClient({ clientId: 'other-exporter', jwks: { keys: [otherKey.publicJwk] } });
});
afterAll(() => sandbox?.close());

/** A system token straight from the sandbox's token endpoint (the assertion built here, by the book). */
async function token(scope: string, clientId = 'exporter', k = key): Promise<string> {
  const tokenEndpoint = `${sandbox.issuer}/token`;
  const assertion = await new jose.SignJWT({})
    .setProtectedHeader({ alg: k.alg, kid: k.kid, typ: 'JWT' })
    .setIssuer(clientId).setSubject(clientId).setAudience(tokenEndpoint).setJti(crypto.randomUUID()).setIssuedAt().setExpirationTime('4m')
    .sign(k.privateKey);
  const res = await fetch(tokenEndpoint, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'client_credentials', scope, client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer', client_assertion: assertion }),
  });
  const body = await json(res);
  if (res.status !== 200) throw new Error(`token: ${res.status} ${JSON.stringify(body)}`);
  return body.access_token;
}

const kickoff = (path: string, t: string | undefined, headers: Record<string, string> = { prefer: 'respond-async', accept: 'application/fhir+json' }) =>
  fetch(`${sandbox.fhirBaseUrl}/${path}`, { headers: { ...headers, ...(t ? { authorization: `Bearer ${t}` } : {}) } });
const get = (url: string, t?: string, method = 'GET') => fetch(url, { method, headers: t ? { authorization: `Bearer ${t}` } : {} });

async function manifestOf(statusUrl: string, t: string) {
  for (let i = 0; i < 50; i++) {
    const res = await get(statusUrl, t);
    if (res.status === 200) return { res, body: await json(res) };
    expect(res.status).toBe(202);
    await new Promise((r) => setTimeout(r, Number(res.headers.get('retry-after')) * 1000));
  }
  throw new Error('never complete');
}

const sample = sampleResources();
const countOf = (type: string, keep: (r: { resourceType: string }) => boolean = () => true) => sample.filter((r) => r.resourceType === type && keep(r)).length;

test('the CapabilityStatement advertises Bulk Data export; the SMART configuration advertises client_credentials with private_key_jwt', async () => {
  const cs = await json(await fetch(`${sandbox.fhirBaseUrl}/metadata`));
  expect(cs.instantiates).toContain('http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data');
  expect(cs.rest[0].operation).toEqual([{ name: 'export', definition: 'http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export' }]);
  expect(cs.rest[0].resource.find((r: { type: string }) => r.type === 'Group').operation[0].name).toBe('export');
  const smart = await json(await fetch(`${sandbox.fhirBaseUrl}/.well-known/smart-configuration`));
  expect(smart.grant_types_supported).toContain('client_credentials');
  expect(smart.token_endpoint_auth_methods_supported).toContain('private_key_jwt');
});

test('system-level kick-off → 202 + Content-Location; polls show X-Progress and Retry-After (too soon → 429); the manifest; the files', async () => {
  const t = await token('system/*.rs');
  const kick = await kickoff('$export?_outputFormat=application%2Ffhir%2Bndjson', t);
  expect(kick.status).toBe(202);
  const statusUrl = kick.headers.get('content-location')!;
  expect(statusUrl).toMatch(new RegExp(`^${sandbox.fhirBaseUrl}/bulk-status/[A-Za-z0-9_-]+$`));
  expect((await json(kick)).resourceType).toBe('OperationOutcome');

  const first = await get(statusUrl, t);
  expect(first.status).toBe(202);
  expect(first.headers.get('x-progress')).toMatch(/^\d+% done/);
  expect(first.headers.get('retry-after')).toBe('1');
  const hammered = await get(statusUrl, t);
  expect(hammered.status).toBe(429);
  expect(hammered.headers.get('retry-after')).toBe('1');
  await new Promise((r) => setTimeout(r, 1000));

  const { res, body } = await manifestOf(statusUrl, t);
  expect(res.headers.get('content-type')).toMatch(/^application\/json/);
  expect(res.headers.get('expires')).toBeTruthy();
  expect(body).toMatchObject({ request: `${sandbox.fhirBaseUrl}/$export?_outputFormat=application%2Ffhir%2Bndjson`, requiresAccessToken: true, error: [] });
  expect(Date.parse(body.transactionTime)).not.toBeNaN();
  const byType: Record<string, number> = {};
  for (const o of body.output) {
    expect(Object.keys(o).sort()).toEqual(['count', 'type', 'url']);
    byType[o.type] = (byType[o.type] ?? 0) + o.count;
  }
  for (const type of ['Patient', 'Practitioner', 'Encounter', 'Condition', 'MedicationRequest', 'Observation', 'Group']) expect(byType[type]).toBe(countOf(type));
  expect(body.output.filter((o: { type: string }) => o.type === 'Observation').map((o: { count: number }) => o.count)).toEqual([50, countOf('Observation') - 50]);

  const obs = body.output.find((o: { type: string }) => o.type === 'Observation');
  expect((await get(obs.url)).status).toBe(401); // requiresAccessToken: true
  const file = await get(obs.url, t);
  expect(file.status).toBe(200);
  expect(file.headers.get('content-type')).toBe('application/fhir+ndjson');
  const lines = (await file.text()).trim().split('\n').map((l) => JSON.parse(l));
  expect(lines).toHaveLength(obs.count);
  expect(lines.every((r) => r.resourceType === 'Observation')).toBe(true);

  // DELETE on the status URL: 202, then the job and its files are gone.
  expect((await get(statusUrl, t, 'DELETE')).status).toBe(202);
  expect((await get(statusUrl, t)).status).toBe(404);
  expect((await get(obs.url, t)).status).toBe(404);
});

test('every request needs a system-level token: none → 401, a user token → 403, another client → 403', async () => {
  const none = await kickoff('$export', undefined);
  expect(none.status).toBe(401);
  expect(none.headers.get('www-authenticate')).toMatch(/^Bearer/);
  expect((await json(none)).resourceType).toBe('OperationOutcome');
  expect((await kickoff('$export', 'not-a-token')).status).toBe(401);

  const client = await sandbox.provider.Client.find('launch-app');
  const user = await new sandbox.provider.AccessToken({ client: client!, accountId: 'smart-Practitioner-71482713', grantId: 'g1', gty: 'authorization_code', scope: 'user/*.rs' }).save();
  const refused = await kickoff('$export', user);
  expect(refused.status).toBe(403);
  expect((await json(refused)).issue[0].diagnostics).toMatch(/system-level token/);

  const t = await token('system/*.rs');
  const statusUrl = (await kickoff('$export', t)).headers.get('content-location')!;
  const other = await token('system/*.rs', 'other-exporter', otherKey);
  expect((await get(statusUrl, other)).status).toBe(403);
  expect((await get(statusUrl, other, 'DELETE')).status).toBe(403);
  expect((await get(statusUrl, t, 'DELETE')).status).toBe(202);
});

test('scopes must cover the types: per type, v1 or v2; a type outside them → 403; no type at all → 403', async () => {
  const patientsOnly = await token('system/Patient.read'); // v1
  const denied = await kickoff('$export?_type=Patient,Observation', patientsOnly);
  expect(denied.status).toBe(403);
  expect((await json(denied)).issue[0].diagnostics).toMatch(/do not allow exporting Observation/);
  const ok = await kickoff('$export', patientsOnly); // no _type: the types the scopes allow
  expect(ok.status).toBe(202);
  const { body } = await manifestOf(ok.headers.get('content-location')!, patientsOnly);
  expect([...new Set(body.output.map((o: { type: string }) => o.type))]).toEqual(['Patient']);

  const groupsOnly = await token('system/Group.rs');
  expect((await kickoff('Patient/$export', groupsOnly)).status).toBe(202);
  const binaryOnly = await token('system/Binary.rs'); // no exportable type of the sandbox's
  const none = await kickoff('$export', binaryOnly);
  expect(none.status).toBe(403);
  expect((await json(none)).issue[0].diagnostics).toMatch(/allow exporting no resource type/);
});

test('a backend client may ask for system scopes only (invalid_scope otherwise)', async () => {
  await expect(token('patient/*.rs')).rejects.toThrow(/400 .*invalid_scope/);
});

test('Patient and Group level: only the patients\' compartments (and the group\'s members); an unknown group → 404', async () => {
  const t = await token('system/*.rs');
  const patientKick = await kickoff('Patient/$export', t);
  const patient = (await manifestOf(patientKick.headers.get('content-location')!, t)).body;
  const types = new Set(patient.output.map((o: { type: string }) => o.type));
  expect(types.has('Practitioner')).toBe(false);
  expect(types.has('Group')).toBe(false);
  expect(patient.output.filter((o: { type: string }) => o.type === 'Patient')[0].count).toBe(countOf('Patient'));

  const groupKick = await kickoff(`Group/${sandbox.groupId}/$export?_type=Patient,Condition`, t);
  expect(groupKick.status).toBe(202);
  const group = (await manifestOf(groupKick.headers.get('content-location')!, t)).body;
  const members = (sample.find((r) => r.resourceType === 'Group') as { member: { entity: { reference: string } }[] }).member.map((m) => m.entity.reference);
  expect(members).toHaveLength(3);
  const memberOf = (r: { subject?: { reference?: string } }) => members.includes(r.subject?.reference ?? '');
  expect(group.output).toEqual([
    expect.objectContaining({ type: 'Patient', count: 3 }),
    expect.objectContaining({ type: 'Condition', count: countOf('Condition', memberOf as never) }),
  ]);
  const patients = (await (await get(group.output[0].url, t)).text()).trim().split('\n').map((l) => JSON.parse(l).id);
  expect(patients.map((id: string) => `Patient/${id}`).sort()).toEqual([...members].sort());

  const unknown = await kickoff('Group/no-such-group/$export', t);
  expect(unknown.status).toBe(404);
  expect((await json(unknown)).resourceType).toBe('OperationOutcome');
});

test('_since, _typeFilter and a POST kick-off with Parameters', async () => {
  const t = await token('system/Observation.rs system/Patient.rs');
  const future = await kickoff('$export?_type=Observation&_since=2999-01-01T00:00:00Z', t);
  expect((await manifestOf(future.headers.get('content-location')!, t)).body.output).toEqual([]);
  const past = await kickoff('$export?_type=Observation&_since=2000-01-01T00:00:00Z', t);
  expect((await manifestOf(past.headers.get('content-location')!, t)).body.output.reduce((s: number, o: { count: number }) => s + o.count, 0)).toBe(countOf('Observation'));

  const heart = await kickoff(`$export?_type=Observation&_typeFilter=${encodeURIComponent('Observation?code=8867-4')}`, t);
  const filtered = (await manifestOf(heart.headers.get('content-location')!, t)).body;
  const lines = (await (await get(filtered.output[0].url, t)).text()).trim().split('\n').map((l) => JSON.parse(l));
  expect(lines.length).toBe(countOf('Observation', ((r: { code?: { coding?: { code?: string }[] } }) => r.code?.coding?.[0]?.code === '8867-4') as never));
  expect(lines.every((r) => r.code.coding[0].code === '8867-4')).toBe(true);

  const post = await fetch(`${sandbox.fhirBaseUrl}/Patient/$export`, {
    method: 'POST',
    headers: { authorization: `Bearer ${t}`, prefer: 'respond-async', accept: 'application/fhir+json', 'content-type': 'application/fhir+json' },
    body: JSON.stringify({ resourceType: 'Parameters', parameter: [{ name: '_type', valueString: 'Patient' }, { name: '_outputFormat', valueString: 'ndjson' }] }),
  });
  expect(post.status).toBe(202);
  const posted = (await manifestOf(post.headers.get('content-location')!, t)).body;
  expect(posted.output.map((o: { type: string }) => o.type)).toEqual(['Patient']);
});

test('bad kick-offs get 4xx OperationOutcomes: no Prefer: respond-async, a format, a _since, a type or a filter the server does not know', async () => {
  const t = await token('system/*.rs');
  const cases: [string, Record<string, string> | undefined, number, RegExp][] = [
    ['$export', { accept: 'application/fhir+json' }, 400, /Prefer: respond-async/],
    ['$export?_outputFormat=text%2Fcsv', undefined, 400, /_outputFormat text\/csv is not supported/],
    ['$export?_since=yesterday', undefined, 400, /_since must be a FHIR instant/],
    ['$export?_type=Patient,Nonsense', undefined, 400, /Unknown resource type\(s\) in _type: Nonsense/],
    [`$export?_typeFilter=${encodeURIComponent('Observation?nonsense=1')}`, undefined, 400, /Observation has no search parameter nonsense/],
    ['$export?_elements=id', { prefer: 'respond-async, handling=strict' }, 400, /Unsupported parameter\(s\) with Prefer: handling=strict: _elements/],
  ];
  for (const [path, headers, status, message] of cases) {
    const res = await kickoff(path, t, headers);
    expect([path, res.status]).toEqual([path, status]);
    const body = await json(res);
    expect(body.resourceType).toBe('OperationOutcome');
    expect(body.issue[0].diagnostics).toMatch(message);
  }
});

test('registering a backend client: POST a public JWKS (JSON) → 201 and a working client; private keys and bad JSON refused', async () => {
  const k = await parsePrivateKey(generateKeyPairSync('ec', { namedCurve: 'P-384' }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString());
  const post = (body: unknown, type = 'application/json') => fetch(`${sandbox.url}/backend-services/clients`, { method: 'POST', headers: { 'content-type': type }, body: typeof body === 'string' ? body : JSON.stringify(body) });
  const ok = await post({ client_id: 'posted-client', jwks: { keys: [k.publicJwk] } });
  expect(ok.status).toBe(201);
  expect(await json(ok)).toMatchObject({ client_id: 'posted-client', token_endpoint: `${sandbox.issuer}/token`, fhir_base_url: sandbox.fhirBaseUrl });
  expect(await token('system/Patient.rs', 'posted-client', k)).toMatch(/\S{20,}/);

  const privateJwk = generateKeyPairSync('ec', { namedCurve: 'P-384' }).privateKey.export({ format: 'jwk' });
  const refused = await post({ jwks: { keys: [{ ...privateJwk, kid: 'oops' }] } });
  expect(refused.status).toBe(400);
  expect((await json(refused)).problems[0]).toMatch(/contains private key material \(d\)/);

  // The page's form: HTML back, the problem shown, the pasted text kept (escaped).
  const form = await post(new URLSearchParams({ client_id: 'form-client', jwks: '{"keys": <b>' }).toString(), 'application/x-www-form-urlencoded');
  expect(form.status).toBe(400);
  const html = await form.text();
  expect(html).toContain('the JWKS is not JSON');
  expect(html).toContain('{&quot;keys&quot;: &lt;b&gt;');
  const pasted = await post(new URLSearchParams({ jwks: JSON.stringify({ keys: [k.publicJwk] }) }).toString(), 'application/x-www-form-urlencoded');
  expect(pasted.status).toBe(201);
  expect(await pasted.text()).toMatch(/Registered <code>backend-[0-9a-f]{12}<\/code>/);
});

test('sandbox-backend: the public keys of the keys directory, read at request time, never a private member', async () => {
  const k = await parsePrivateKey(generateKeyPairSync('ec', { namedCurve: 'P-384' }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString());
  await expect(token('system/*.rs', 'sandbox-backend', k)).rejects.toThrow(/invalid_client.*not among the public keys in/);
  // What `smart-bff keys generate` writes, and a careless file holding a private JWK.
  writeFileSync(join(keysDir, 'es384-one.jwks.json'), JSON.stringify({ keys: [k.publicJwk] }));
  const careless = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' });
  writeFileSync(join(keysDir, 'rs384-two.jwks.json'), JSON.stringify({ keys: [{ ...careless, kid: 'careless' }] }));
  writeFileSync(join(keysDir, 'notes.json'), '{"keys": "ignored: not a .jwks.json file"}');
  expect(await token('system/*.rs', 'sandbox-backend', k)).toMatch(/\S{20,}/);
  const served = await fetch(`${sandbox.url}/backend-services/jwks.json`);
  const jwks = await json(served);
  expect(jwks.keys.map((x: { kid: string }) => x.kid).sort()).toEqual(['careless', k.kid].sort());
  for (const m of ['d', 'p', 'q', 'dp', 'dq', 'qi']) expect(JSON.stringify(jwks)).not.toContain(`"${m}":`);
  const page = await (await fetch(`${sandbox.url}/backend-services`)).text();
  expect(page).toContain(`<code>${k.kid}</code> ES384`);
});

test('L6 a registered client is never taken over: its id is refused to anyone else; its keys are replaced only with its registration token', async () => {
  const pem = () => generateKeyPairSync('ec', { namedCurve: 'P-384' }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  const [mine, next, attacker] = [await parsePrivateKey(pem()), await parsePrivateKey(pem()), await parsePrivateKey(pem())];
  const post = (body: unknown, type = 'application/json') => fetch(`${sandbox.url}/backend-services/clients`, { method: 'POST', headers: { 'content-type': type }, body: typeof body === 'string' ? body : JSON.stringify(body) });
  const created = await post({ client_id: 'owned-client', jwks: { keys: [mine.publicJwk] } });
  expect(created.status).toBe(201);
  const { registration_token: registrationToken } = await json(created);
  expect(registrationToken).toMatch(/^[\w-]{32}$/);

  // someone else, with the same id: JSON, and the page's form (cross-site forms post like this)
  const taken = await post({ client_id: 'owned-client', jwks: { keys: [attacker.publicJwk] } });
  expect(taken.status).toBe(400);
  expect((await json(taken)).problems[0]).toMatch(/client id owned-client is registered already/);
  const form = await post(new URLSearchParams({ client_id: 'owned-client', jwks: JSON.stringify({ keys: [attacker.publicJwk] }), registration_token: 'guess' }).toString(), 'application/x-www-form-urlencoded');
  expect(form.status).toBe(400);
  expect(await form.text()).toContain('the registration token does not match client id owned-client: its keys are unchanged');
  // the in-process registration (as the server registers its own) cannot be replaced either
  expect((await post({ client_id: 'exporter', jwks: { keys: [attacker.publicJwk] } })).status).toBe(400);
  await expect(token('system/*.rs', 'owned-client', attacker)).rejects.toThrow(/invalid_client/);
  await expect(token('system/*.rs', 'exporter', attacker)).rejects.toThrow(/invalid_client/);
  expect(await token('system/*.rs', 'owned-client', mine)).toMatch(/\S{20,}/);
  expect(await token('system/*.rs', 'exporter', key)).toMatch(/\S{20,}/);

  // the owner rotates with the token
  const rotated = await post({ client_id: 'owned-client', jwks: { keys: [next.publicJwk] }, registration_token: registrationToken });
  expect(rotated.status).toBe(200);
  expect(await token('system/*.rs', 'owned-client', next)).toMatch(/\S{20,}/);
  await expect(token('system/*.rs', 'owned-client', mine)).rejects.toThrow(/invalid_client/);
});
