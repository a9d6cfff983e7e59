// The app page: reads its launch context from the server (never a token) and shows it.
// Every call names its context with X-SMART-Context and carries the anti-forgery header X-CSRF: 1.
(function () {
  'use strict';
  var params = new URLSearchParams(location.search);
  var contextId = params.get('context') || sessionStorage.getItem('smart-context') || '';
  if (contextId) sessionStorage.setItem('smart-context', contextId);

  function api(path, init) {
    init = init || {};
    var headers = Object.assign({ 'X-CSRF': '1', Accept: 'application/json' }, init.headers || {});
    if (contextId) headers['X-SMART-Context'] = contextId;
    return fetch(path, Object.assign({}, init, { headers: headers, credentials: 'same-origin' }));
  }
  function el(tag, text, cls) { var e = document.createElement(tag); if (text != null) e.textContent = String(text); if (cls) e.className = cls; return e; }
  function status(message, isError) {
    var s = document.getElementById('status');
    s.hidden = false; s.textContent = '';
    s.appendChild(el('p', message, isError ? 'message' : null));
    if (isError) { var a = el('a', 'Launch again', 'button'); a.href = '/login'; s.appendChild(a); }
  }

  api('/api/session').then(function (res) {
    return res.json().then(function (body) { return { res: res, body: body }; });
  }).then(function (r) {
    if (!r.res.ok) {
      status(r.body.message || 'Your session has ended.', true);
      return;
    }
    var s = r.body;
    document.getElementById('status').hidden = true;
    var details = document.getElementById('session-details');
    [['Patient', s.patient], ['Encounter', s.encounter], ['User', s.fhirUser], ['FHIR server', s.iss], ['Tenant', s.tenant],
     ['Granted scopes', s.granted_scopes], ['Requested scopes', s.requested_scopes], ['Token expires', s.expires_at]]
      .forEach(function (row) { if (row[1]) { details.appendChild(el('dt', row[0])); details.appendChild(el('dd', row[1])); } });
    document.getElementById('session').hidden = false;
    if (s.need_patient_banner && s.patient) {
      var b = document.getElementById('banner');
      b.hidden = false;
      b.appendChild(el('div', 'Patient ' + s.patient, 'name'));
    }
  }).catch(function () { status('Could not reach the server.', true); });

  document.getElementById('logout').addEventListener('click', function () {
    api('/logout', { method: 'POST' }).finally(function () { sessionStorage.removeItem('smart-context'); location.href = '/'; });
  });
})();
