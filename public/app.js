// The app page. It never sees a token: it reads its launch context from /api/session and FHIR data through
// the server's /fhir proxy. Every call names its context (X-SMART-Context) and carries X-CSRF: 1.
(function () {
  'use strict';
  // Storage can be blocked inside another site's frame (third-party storage): the page works without it.
  function remember(key, value) {
    try {
      if (value === undefined) return window.sessionStorage.getItem(key);
      if (value === null) window.sessionStorage.removeItem(key); else window.sessionStorage.setItem(key, value);
    } catch (e) { /* storage unavailable */ }
    return null;
  }
  var params = new URLSearchParams(location.search);
  var contextId = params.get('context') || remember('smart-context') || '';
  if (contextId) remember('smart-context', contextId);

  function $(id) { return document.getElementById(id); }
  function el(tag, text, cls) { var e = document.createElement(tag); if (text != null) e.textContent = String(text); if (cls) e.className = cls; return e; }

  function SessionEnded(message) { this.message = message; }

  function call(url, init) {
    init = init || {};
    var headers = Object.assign({ 'X-CSRF': '1', Accept: 'application/fhir+json, application/json' }, init.headers || {});
    if (contextId) headers['X-SMART-Context'] = contextId;
    return fetch(url, Object.assign({}, init, { headers: headers, credentials: 'same-origin' })).then(function (res) {
      return res.json().catch(function () { return {}; }).then(function (body) {
        if (res.status === 401) throw new SessionEnded(messageOf(body) || 'Your session has ended.');
        if (!res.ok) throw new Error(messageOf(body) || ('Request failed (' + res.status + ')'));
        return body;
      });
    });
  }
  function messageOf(body) {
    if (!body) return '';
    if (body.message) return body.message;
    if (body.resourceType === 'OperationOutcome' && body.issue && body.issue[0]) return (body.issue[0].details && body.issue[0].details.text) || body.issue[0].diagnostics || '';
    return '';
  }

  function showStatus(message) { var s = $('status'); s.hidden = false; s.textContent = message; }
  function showExpired(message, launchMode) {
    ['status', 'banner', 'resources', 'session'].forEach(function (id) { $(id).hidden = true; });
    $('expired').hidden = false;
    $('expired-message').textContent = message;
    if (launchMode === 'ehr') $('relaunch').textContent = 'Sign in again';
  }
  function fail(err, launchMode) {
    if (err instanceof SessionEnded) showExpired(err.message, launchMode);
    else showStatus(err.message || 'Something went wrong.');
  }

  function humanName(p) {
    var n = (p.name || [])[0] || {};
    return n.text || [(n.prefix || []).join(' '), (n.given || []).join(' '), n.family].filter(Boolean).join(' ') || 'Unnamed patient';
  }
  function codeText(cc) {
    if (!cc) return '';
    return cc.text || ((cc.coding || [])[0] || {}).display || ((cc.coding || [])[0] || {}).code || '';
  }
  function day(v) { return typeof v === 'string' ? v.slice(0, 10) : ''; }
  function quantity(o) {
    if (o.valueQuantity) return o.valueQuantity.value + ' ' + (o.valueQuantity.unit || '');
    if (o.valueString) return o.valueString;
    if (o.valueCodeableConcept) return codeText(o.valueCodeableConcept);
    if (o.component) return o.component.map(function (c) { return c.valueQuantity ? c.valueQuantity.value : ''; }).join('/') + ' ' + (((o.component[0] || {}).valueQuantity || {}).unit || '');
    return '';
  }

  function renderBanner(patient) {
    $('banner-name').textContent = humanName(patient);
    var ids = (patient.identifier || []).map(function (i) { return ((i.type && codeText(i.type)) || 'ID') + ' ' + i.value; });
    $('banner-details').textContent = ['Born ' + (patient.birthDate || 'unknown'), patient.gender || 'gender unknown'].concat(ids).join(' · ');
    $('banner').hidden = false;
  }

  var tables = {
    conditions: { headers: ['Condition', 'Status', 'Onset'], row: function (r) { return [codeText(r.code), codeText(r.clinicalStatus), day(r.onsetDateTime || r.recordedDate)]; } },
    observations: { headers: ['Observation', 'Value', 'Date'], row: function (r) { return [codeText(r.code), quantity(r), day(r.effectiveDateTime || r.issued)]; } },
    medications: { headers: ['Medication', 'Status', 'Authored'], row: function (r) { return [codeText(r.medicationCodeableConcept) || ((r.medicationReference || {}).display) || '', r.status || '', day(r.authoredOn)]; } },
  };

  function renderBundle(targetId, bundle, launchMode) {
    var target = $(targetId);
    var spec = tables[targetId];
    var table = target.querySelector('table');
    if (!table) {
      target.textContent = '';
      table = el('table');
      var head = el('tr');
      spec.headers.forEach(function (h) { head.appendChild(el('th', h)); });
      table.appendChild(head);
      target.appendChild(table);
    }
    var entries = (bundle.entry || []).filter(function (e) { return e.resource && e.search ? e.search.mode !== 'outcome' : !!e.resource; });
    entries.forEach(function (e) {
      var tr = el('tr');
      spec.row(e.resource).forEach(function (v) { tr.appendChild(el('td', v)); });
      table.appendChild(tr);
    });
    if (!table.querySelector('td')) { target.textContent = target.getAttribute('data-empty'); return; }
    var old = target.querySelector('button.more'); if (old) old.remove();
    var next = (bundle.link || []).filter(function (l) { return l.relation === 'next'; })[0];
    if (next) {
      var url = new URL(next.url, location.href);
      if (url.origin !== location.origin || url.pathname.indexOf('/fhir/') !== 0) return; // only through our proxy
      var more = el('button', 'Load more', 'button secondary more');
      more.type = 'button';
      more.addEventListener('click', function () {
        more.disabled = true;
        call(url.pathname + url.search).then(function (b) { renderBundle(targetId, b, launchMode); }).catch(function (err) { fail(err, launchMode); });
      });
      target.appendChild(more);
    }
  }

  function load() {
    call('/api/session').then(function (s) {
      $('status').hidden = true;
      var details = $('session-details');
      [['Patient', s.patient], ['Encounter', s.encounter], ['User', s.fhirUser], ['FHIR server', s.iss], ['Tenant', s.tenant],
       ['Granted scopes', s.granted_scopes], ['Requested scopes', s.requested_scopes], ['Token expires', s.expires_at]]
        .forEach(function (row) { if (row[1]) { details.appendChild(el('dt', row[0])); details.appendChild(el('dd', row[1])); } });
      $('session').hidden = false;
      if (!s.patient) return;
      var pid = encodeURIComponent(s.patient);
      return call('/fhir/Patient/' + pid).then(function (patient) {
        if (s.need_patient_banner !== false) renderBanner(patient);
        document.title = humanName(patient) + ' · SMART BFF';
        $('resources').hidden = false;
        return Promise.all([
          call('/fhir/Condition?patient=' + pid + '&_count=10').then(function (b) { renderBundle('conditions', b, s.launch_mode); }),
          call('/fhir/Observation?patient=' + pid + '&_sort=-date&_count=10').then(function (b) { renderBundle('observations', b, s.launch_mode); }),
          call('/fhir/MedicationRequest?patient=' + pid + '&_count=10').then(function (b) { renderBundle('medications', b, s.launch_mode); }),
        ]);
      }).catch(function (err) { fail(err, s.launch_mode); });
    }).catch(function (err) { fail(err); });
  }

  $('logout').addEventListener('click', function () {
    call('/logout', { method: 'POST' }).catch(function () { return null; }).then(function () { remember('smart-context', null); location.href = '/'; });
  });
  load();
})();
