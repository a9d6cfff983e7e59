/** HTML for the sandbox's own pages (home, sign-in, consent, errors): escaped, no inline script. */

export function esc(v: unknown): string {
  return String(v ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

const STYLE = `body{font:16px/1.5 system-ui,sans-serif;margin:0;background:#f3f5f8;color:#1d2330}
header{background:#6b2c91;color:#fff;padding:.6rem 1.2rem;font-weight:600}
main{max-width:56rem;margin:1.5rem auto;padding:0 1rem}.card{background:#fff;border-radius:10px;padding:1rem 1.4rem;margin-bottom:1rem;box-shadow:0 1px 3px rgba(0,0,0,.08)}
table{border-collapse:collapse;width:100%}td,th{text-align:left;padding:.45rem;border-bottom:1px solid #e6e9ef}
button{font:inherit;padding:.45rem .9rem;border-radius:6px;border:0;background:#6b2c91;color:#fff;cursor:pointer}button.secondary{background:#e6e9ef;color:#1d2330}
code{background:#eef1f6;padding:0 .25rem;border-radius:4px}label{display:block;margin:.3rem 0}.muted{color:#5b6475}`;

export function page(title: string, body: string): string {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(title)} · Sandbox EHR</title><style>${STYLE}</style></head><body><header>Sandbox EHR (development only)</header><main>${body}</main></body></html>`;
}

export function renderHome(o: { basePath: string; fhirBaseUrl: string; patients: { id: string; name: string; birthDate?: string; gender?: string }[]; clients: { client_id: string; launch_uri: string }[] }): string {
  const clientField = o.clients.length === 1
    ? `<input type="hidden" name="client_id" value="${esc(o.clients[0]!.client_id)}">`
    : `<select name="client_id" aria-label="App">${o.clients.map((c) => `<option value="${esc(c.client_id)}">${esc(c.client_id)}</option>`).join('')}</select>`;
  const rows = o.patients.map((p) => `<tr><td>${esc(p.name)}</td><td>${esc(p.birthDate ?? '')}</td><td>${esc(p.gender ?? '')}</td><td><code>${esc(p.id)}</code></td>
<td><form method="post" action="${esc(o.basePath)}/launch"><input type="hidden" name="patient" value="${esc(p.id)}">${clientField}<button type="submit" data-patient="${esc(p.id)}">Launch app</button></form></td></tr>`).join('');
  return page('Patients', `<section class="card"><h1>Patients</h1>
<p>This is the built-in development EHR: a real OAuth 2.0 / OpenID Connect authorization server (oidc-provider) speaking SMART App Launch 2, and a FHIR R4 server with sample patients. Press <strong>Launch app</strong> to perform a real EHR launch of the app for that patient.</p>
<p class="muted">FHIR base (iss): <code>${esc(o.fhirBaseUrl)}</code></p>
${o.clients.length ? `<table><tr><th>Name</th><th>Born</th><th>Gender</th><th>Id</th><th></th></tr>${rows}</table>` : '<p>No app with a launch URI is registered.</p>'}</section>`);
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
