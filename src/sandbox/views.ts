/** HTML for the sandbox's own pages (home, backend services, sign-in, consent, errors): escaped, no inline script. */
import { isAbsolute, relative } from 'node:path';

export function esc(v: unknown): string {
  return String(v ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

const STYLE = `body{font:16px/1.5 system-ui,sans-serif;margin:0;background:#f3f5f8;color:#1d2330}
header{background:#6b2c91;color:#fff;padding:.6rem 1.2rem;font-weight:600}
main{max-width:56rem;margin:1.5rem auto;padding:0 1rem}.card{background:#fff;border-radius:10px;padding:1rem 1.4rem;margin-bottom:1rem;box-shadow:0 1px 3px rgba(0,0,0,.08)}
table{border-collapse:collapse;width:100%}td,th{text-align:left;padding:.45rem;border-bottom:1px solid #e6e9ef}
button{font:inherit;padding:.45rem .9rem;border-radius:6px;border:0;background:#6b2c91;color:#fff;cursor:pointer}button.secondary{background:#e6e9ef;color:#1d2330}
code{background:#eef1f6;padding:0 .25rem;border-radius:4px}label{display:block;margin:.3rem 0}.muted{color:#5b6475}
pre{background:#eef1f6;padding:.6rem .8rem;border-radius:6px;overflow-x:auto;font-size:.9em}textarea,input[type=text]{font:inherit;width:100%;box-sizing:border-box}
.ok{border-left:4px solid #2e7d32}.problem{border-left:4px solid #c62828}`;

export function page(title: string, body: string): string {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(title)} · Sandbox EHR</title><style>${STYLE}</style></head><body><header>Sandbox EHR (development only)</header><main>${body}</main></body></html>`;
}

/** A directory as a user would type it from the working directory (./keys), or absolute when elsewhere. */
function shownDir(dir: string): string {
  const rel = relative(process.cwd(), dir);
  return !rel ? '.' : rel.startsWith('..') || isAbsolute(rel) ? dir : `./${rel}`;
}

function backendCommands(fhirBaseUrl: string, clientId: string, key: string, groupId: string): string {
  return `npx smart-bff token  --iss ${fhirBaseUrl} --client-id ${clientId} --key ${key}
npx smart-bff export --iss ${fhirBaseUrl} --client-id ${clientId} --key ${key} --out ./export
npx smart-bff export --iss ${fhirBaseUrl} --client-id ${clientId} --key ${key} --group ${groupId} --type Patient,Observation --out ./export-group`;
}

export function renderHome(o: {
  basePath: string; fhirBaseUrl: string; patients: { id: string; name: string; birthDate?: string; gender?: string }[]; clients: { client_id: string; launch_uri: string }[];
  backend: { clientId: string; keysDir: string | undefined; keys: number; groupId: string };
}): string {
  const clientField = o.clients.length === 1
    ? `<input type="hidden" name="client_id" value="${esc(o.clients[0]!.client_id)}">`
    : `<select name="client_id" aria-label="App">${o.clients.map((c) => `<option value="${esc(c.client_id)}">${esc(c.client_id)}</option>`).join('')}</select>`;
  const rows = o.patients.map((p) => `<tr><td>${esc(p.name)}</td><td>${esc(p.birthDate ?? '')}</td><td>${esc(p.gender ?? '')}</td><td><code>${esc(p.id)}</code></td>
<td><form method="post" action="${esc(o.basePath)}/launch"><input type="hidden" name="patient" value="${esc(p.id)}">${clientField}<button type="submit" data-patient="${esc(p.id)}">Launch app</button></form></td></tr>`).join('');
  return page('Patients', `<section class="card"><h1>Patients</h1>
<p>This is the built-in development EHR: a real OAuth 2.0 / OpenID Connect authorization server (oidc-provider) speaking SMART App Launch 2, and a FHIR R4 server with sample patients. Press <strong>Launch app</strong> to perform a real EHR launch of the app for that patient.</p>
<p class="muted">FHIR base (iss): <code>${esc(o.fhirBaseUrl)}</code></p>
${o.clients.length ? `<table><tr><th>Name</th><th>Born</th><th>Gender</th><th>Id</th><th></th></tr>${rows}</table>` : '<p>No app with a launch URI is registered.</p>'}</section>
${renderBackendCard(o.fhirBaseUrl, o.basePath, o.backend)}`);
}

function renderBackendCard(fhirBaseUrl: string, basePath: string, b: { clientId: string; keysDir: string | undefined; keys: number; groupId: string }): string {
  const keysLine = b.keysDir
    ? `<p>The system client <code>${esc(b.clientId)}</code> (client_credentials with a signed JWT assertion, <code>system/</code> scopes) accepts the public keys in <code>${esc(shownDir(b.keysDir))}</code>, read at every token request (${b.keys} key${b.keys === 1 ? '' : 's'} there now). Generate a key there and use it:</p>
<pre>npx smart-bff keys generate --out ${esc(shownDir(b.keysDir))}
${esc(backendCommands(fhirBaseUrl, b.clientId, `${shownDir(b.keysDir)}/es384-<kid>.private.pem`, b.groupId))}</pre>`
    : '<p>No keys directory is configured for the system client; register a JWKS instead.</p>';
  return `<section class="card"><h2>Backend services and Bulk Data</h2>${keysLine}
<p>The FHIR server serves <code>$export</code> at system, <code>Patient</code> and <code>Group/${esc(b.groupId)}</code> level (NDJSON files, status polling, <code>DELETE</code> of a finished job). <a href="${esc(basePath)}/backend-services">Backend clients: the keys in use, and registering another client with its JWKS</a>.</p></section>`;
}

export function renderBackendServices(o: {
  basePath: string; fhirBaseUrl: string; tokenEndpoint: string; keysDirClientId: string; keysDir: string | undefined; groupId: string;
  keysDirectory: { keys: { kid?: string; alg?: string }[]; problems: string[] };
  clients: { clientId: string; source: string; keys: { kid: string; alg: string }[]; registeredAt?: string }[];
  registered?: { clientId: string; registrationToken: string; replaced: boolean }; problems?: string[]; jwksText?: string; clientIdText?: string;
}): string {
  const r = o.registered;
  const notice = r
    ? `<section class="card ok"><h2>${r.replaced ? 'Keys replaced for' : 'Registered'} <code>${esc(r.clientId)}</code></h2><p>Sign assertions with the private key of the JWKS you registered:</p>
<pre>${esc(backendCommands(o.fhirBaseUrl, r.clientId, '<your private key file>', o.groupId))}</pre>
${r.replaced ? '' : `<p>Registration token (keep it: it is shown only now, and it is the only way to replace this client's keys later): <code id="registration-token">${esc(r.registrationToken)}</code></p>`}
<p class="muted">Registrations live in memory: they are gone when the server restarts.</p></section>`
    : o.problems?.length ? `<section class="card problem"><h2>Not registered</h2><ul>${o.problems.map((p) => `<li>${esc(p)}</li>`).join('')}</ul></section>` : '';
  const rows = o.clients.map((c) => `<tr><td><code>${esc(c.clientId)}</code></td><td>${c.source === 'keys-directory' ? `public keys in <code>${esc(shownDir(o.keysDir ?? ''))}</code>` : `registered ${esc(c.registeredAt ?? '')}`}</td>
<td>${c.keys.length ? c.keys.map((k) => `<code>${esc(k.kid)}</code> ${esc(k.alg)}`).join('<br>') : '<span class="muted">none yet</span>'}</td></tr>`).join('');
  const skipped = o.keysDirectory.problems.length
    ? `<p class="muted">Skipped in the keys directory: ${o.keysDirectory.problems.map((p) => esc(p)).join('; ')}</p>` : '';
  return page('Backend services', `${notice}<section class="card"><h1>Backend services</h1>
<p>System clients authenticate with <code>private_key_jwt</code> (RS384 or ES384) and the <code>client_credentials</code> grant, and may ask for any <code>system/</code> scope (v1 <code>system/Patient.read</code> or v2 <code>system/Patient.rs</code>).</p>
<p class="muted">FHIR base (iss): <code>${esc(o.fhirBaseUrl)}</code><br>Token endpoint: <code>${esc(o.tokenEndpoint)}</code></p>
<table><tr><th>Client id</th><th>Keys from</th><th>Keys (kid)</th></tr>${rows}</table>${skipped}
${o.keysDir ? `<p><code>${esc(o.keysDirClientId)}</code> reads the files <code>*.jwks.json</code> in <code>${esc(shownDir(o.keysDir))}</code> (what <code>npx smart-bff keys generate --out ${esc(shownDir(o.keysDir))}</code> writes) at every token request; <a href="${esc(o.basePath)}/backend-services/jwks.json">its JWKS now</a>. Private keys are never read.</p>` : ''}
</section>
<section class="card"><h2>Register a backend client</h2>
<p>Paste the <strong>public</strong> JWK Set of your key (the <code>.jwks.json</code> file), as you would in an EHR's developer console. Programs can POST <code>{"client_id","jwks"}</code> as JSON to the same address. A client id already registered is refused, unless the request carries the registration token handed out when it was registered (<code>registration_token</code>): nobody replaces the keys of someone else's client, nor those of <code>${esc(o.keysDirClientId)}</code> or the server's own.</p>
<form method="post" action="${esc(o.basePath)}/backend-services/clients">
<label>Client id (optional; one is made up when empty) <input type="text" name="client_id" value="${esc(o.clientIdText ?? '')}" pattern="[A-Za-z0-9._\-]{3,64}"></label>
<label>JWK Set <textarea name="jwks" rows="10" required placeholder='{"keys":[{"kty":"EC","crv":"P-384","kid":"…","x":"…","y":"…"}]}'>${esc(o.jwksText ?? '')}</textarea></label>
<label>Registration token (only to replace the keys of a client you registered: the token you were given then) <input type="password" name="registration_token" autocomplete="off"></label>
<p><button type="submit">Register</button></p></form></section>`);
}

export function renderLogin(o: { action: string; clientId: string; users: { id: string; name: string }[] }): string {
  const options = o.users.map((u, i) => `<label><input type="radio" name="user" value="${esc(u.id)}"${i === 0 ? ' checked' : ''}> ${esc(u.name)}</label>`).join('');
  return page('Sign in', `<section class="card"><h1>Sign in</h1><p><strong>${esc(o.clientId)}</strong> wants you to sign in to the sandbox EHR.</p>
<form method="post" action="${esc(o.action)}">${options}<p><button type="submit">Sign in</button></p></form></section>`);
}

export function renderConsent(o: { action: string; clientId: string; scopes: string[]; patients?: { id: string; name: string }[]; launchPatient?: string }): string {
  const picker = o.patients
    ? `<h2>Patient</h2>${o.patients.map((p, i) => `<label><input type="radio" name="patient" value="${esc(p.id)}"${i === 0 ? ' checked' : ''}> ${esc(p.name)}</label>`).join('')}`
    : o.launchPatient ? `<p>Patient in context: <code>${esc(o.launchPatient)}</code></p>` : '';
  return page('Allow access', `<section class="card"><h1>Allow access?</h1><p><strong>${esc(o.clientId)}</strong> asks for:</p>
<ul>${o.scopes.map((s) => `<li><code>${esc(s)}</code></li>`).join('')}</ul>
<form method="post" action="${esc(o.action)}">${picker}<p><button type="submit" name="action" value="allow">Allow</button> <button type="submit" name="action" value="deny" class="secondary">Deny</button></p></form></section>`);
}

export function renderSandboxError(error: string, description?: string): string {
  return page('Error', `<section class="card"><h1>The sandbox EHR could not continue</h1><p><code>${esc(error)}</code></p>${description ? `<p>${esc(description)}</p>` : ''}</section>`);
}
