/**
 * Jest's global setup: one temporary directory for the whole run, made the process's TMPDIR, so that every
 * `os.tmpdir()` in the tests, in Jest's workers (spawned after this, with this environment) and in the processes the
 * tests start (servers, the CLI, Chromium, OpenSSL) puts its files under it. test/global-teardown.cjs removes it.
 */
const { chmodSync, mkdtempSync, statSync } = require('node:fs');
const { tmpdir } = require('node:os');
const { join } = require('node:path');

module.exports = function globalSetup() {
  const parent = tmpdir();
  const dir = mkdtempSync(join(parent, 'smart-bff-tests-'));
  // the permissions of the directory it stands in for (/tmp: 1777), not mkdtemp's 0700: some tests run the server as
  // another user (`nobody`, startup.test.ts), which must reach and write its temporary directory as it would /tmp
  chmodSync(dir, statSync(parent).mode & 0o7777);
  process.env.SMART_BFF_TEST_TMPDIR = dir;
  process.env.TMPDIR = dir;
};
