// The operator console's script (/admin). Every state change (sign-in, sign-out, start, cancel) is a same-origin
// fetch with the header X-CSRF: 1, which the server requires. The operator token is read from the sign-in form,
// sent once, and never stored: the server answers with its own HttpOnly cookie. Everything shown is set with
// textContent, never as HTML.
(function () {
  'use strict';
  function $(id) { return document.getElementById(id); }
  function el(tag, text, cls) { var e = document.createElement(tag); if (text != null) e.textContent = String(text); if (cls) e.className = cls; return e; }

  function send(method, url, body) {
    var init = { method: method, credentials: 'same-origin', headers: { 'X-CSRF': '1', Accept: 'application/json' } };
    if (body !== undefined) { init.headers['Content-Type'] = 'application/json'; init.body = JSON.stringify(body); }
    return fetch(url, init).then(function (res) {
      return res.json().catch(function () { return {}; }).then(function (data) { return { status: res.status, ok: res.ok, data: data }; });
    });
  }
  function toSignIn() { location.assign('/admin/sign-in?next=' + encodeURIComponent(location.pathname + location.search)); }
  function showError(node, message) { node.hidden = !message; node.textContent = message || ''; }
  function messageOf(r, fallback) { return (r.data && (r.data.message + (r.data.hint ? ' ' + r.data.hint : ''))) || fallback; }

  // --- sign-in
  var signIn = $('sign-in-form');
  if (signIn) {
    signIn.addEventListener('submit', function (ev) {
      ev.preventDefault();
      var token = $('token');
      var button = signIn.querySelector('button');
      button.disabled = true;
      send('POST', '/admin/api/sign-in', { token: token.value, next: signIn.getAttribute('data-next') }).then(function (r) {
        token.value = '';
        button.disabled = false;
        if (r.ok) location.assign(r.data.next || '/admin/launches');
        else showError($('sign-in-error'), r.status === 429 ? messageOf(r, 'Too many attempts.') : messageOf(r, 'Sign-in failed.'));
      }, function () { button.disabled = false; showError($('sign-in-error'), 'The server could not be reached.'); });
    });
  }

  // --- sign-out
  var signOut = $('sign-out');
  if (signOut) {
    signOut.addEventListener('click', function () {
      send('POST', '/admin/api/sign-out').then(function () { location.assign('/admin/sign-in'); });
    });
  }

  // --- exports
  var jobsBody = $('jobs-body');
  var timer = null;

  function describeJob(j) {
    var what = j.level === 'group' ? 'Group ' + j.groupId : j.level === 'patient' ? 'Patient' : 'System';
    if (j.types.length) what += ' · ' + j.types.join(', ');
    if (j.since) what += ' · since ' + j.since;
    return what;
  }

  function progressCell(j) {
    var td = el('td', null, 'progress');
    var parts = [];
    if (j.status === 'running' && j.progress) parts.push('server: ' + j.progress);
    if (j.filesTotal) parts.push(j.filesDone + '/' + j.filesTotal + ' files');
    if (j.resources) parts.push(j.resources + ' resources');
    if (j.summary) parts.push('done in ' + j.summary.seconds + ' s');
    if (!parts.length && j.status === 'running') parts.push('starting…');
    td.textContent = parts.join(' · ');
    if (j.error) {
      td.appendChild(el('p', j.error.message, 'form-error'));
      if (j.error.causes && j.error.causes.length) {
        var ul = el('ul');
        j.error.causes.forEach(function (c) { ul.appendChild(el('li', c)); });
        td.appendChild(ul);
      }
      if (j.error.hint) td.appendChild(el('p', j.error.hint, 'meta'));
    }
    return td;
  }

  function renderJobs(jobs) {
    jobsBody.textContent = '';
    $('jobs-empty').hidden = jobs.length > 0;
    jobs.forEach(function (j) {
      var tr = el('tr');
      tr.setAttribute('data-job', j.id);
      tr.setAttribute('data-status', j.status);
      var first = el('td');
      first.appendChild(el('code', j.id.slice(0, 8)));
      first.appendChild(el('div', j.registration + ' · ' + j.createdAt.slice(0, 19).replace('T', ' '), 'meta'));
      tr.appendChild(first);
      tr.appendChild(el('td', describeJob(j)));
      var status = el('td');
      status.appendChild(el('span', j.status, 'badge badge-' + j.status));
      tr.appendChild(status);
      tr.appendChild(progressCell(j));
      var files = el('td', null, 'files');
      if (j.files.length) {
        var ul = el('ul');
        j.files.forEach(function (f) {
          var li = el('li');
          var a = el('a', f.name);
          a.href = f.url;
          a.setAttribute('download', f.name);
          li.appendChild(a);
          li.appendChild(document.createTextNode(' (' + f.resources + (f.kind === 'error' ? ' errors' : ' resources') + ')'));
          ul.appendChild(li);
        });
        files.appendChild(ul);
      }
      tr.appendChild(files);
      var actions = el('td');
      if (j.status === 'running') {
        var cancel = el('button', 'Cancel', 'button secondary small cancel-job');
        cancel.type = 'button';
        cancel.addEventListener('click', function () {
          cancel.disabled = true;
          send('DELETE', '/admin/api/exports/' + encodeURIComponent(j.id)).then(function (r) {
            if (r.status === 401) return toSignIn();
            if (!r.ok) showError($('jobs-error'), messageOf(r, 'Cancel failed.'));
            loadJobs();
          });
        });
        actions.appendChild(cancel);
      }
      tr.appendChild(actions);
      jobsBody.appendChild(tr);
    });
  }

  function loadJobs() {
    if (timer) { clearTimeout(timer); timer = null; }
    return fetch('/admin/api/exports', { credentials: 'same-origin', headers: { Accept: 'application/json' } }).then(function (res) {
      if (res.status === 401) { toSignIn(); return; }
      return res.json().then(function (data) {
        showError($('jobs-error'), '');
        renderJobs(data.jobs);
        if (data.jobs.some(function (j) { return j.status === 'running'; })) timer = setTimeout(loadJobs, 1000);
      });
    }, function () {
      showError($('jobs-error'), 'The server could not be reached; retrying.');
      timer = setTimeout(loadJobs, 3000);
    });
  }

  var form = $('export-form');
  if (form) {
    form.addEventListener('submit', function (ev) {
      ev.preventDefault();
      var level = form.querySelector('input[name="level"]:checked').value;
      var body = { registration: $('registration').value, level: level };
      if (level === 'group') body.groupId = $('group-id').value.trim();
      var types = $('types').value.split(/[\s,]+/).filter(Boolean);
      if (types.length) body.types = types;
      var since = $('since').value;
      if (since) {
        var t = new Date(since);
        if (isNaN(t.getTime())) return showError($('export-error'), 'The _since time is not a valid time.');
        body.since = t.toISOString();
      }
      var button = $('start-export');
      button.disabled = true;
      send('POST', '/admin/api/exports', body).then(function (r) {
        button.disabled = false;
        if (r.status === 401) return toSignIn();
        if (!r.ok) return showError($('export-error'), messageOf(r, 'The export could not be started.'));
        showError($('export-error'), '');
        loadJobs();
      }, function () { button.disabled = false; showError($('export-error'), 'The server could not be reached.'); });
    });
  }
  if (jobsBody) loadJobs();
})();
