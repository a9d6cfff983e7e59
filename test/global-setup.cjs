/**
 * Jest's global setup: one temporary directory for the whole run, made the process's TMPDIR, so that every
 * `os.tmpdir()` in the tests, in Jest's workers (spawned after this, with this environment) and in the processes the
 * tests start (servers, the CLI, Chromium, OpenSSL) puts its files under it. test/global-teardown.cjs removes it.
 */
const { mkdtempSync } = require('node:fs');
const { tmpdir } = require('node:os');
const { join } = require('node:path');

module.exports = function globalSetup() {
  const dir = mkdtempSync(join(tmpdir(), 'smart-bff-tests-'));
  process.env.SMART_BFF_TEST_TMPDIR = dir;
  process.env.TMPDIR = dir;
};
