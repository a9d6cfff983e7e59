/** Jest's global teardown: removes the run's temporary directory (test/global-setup.cjs), whatever the tests left in it. */
const { rmSync } = require('node:fs');

module.exports = function globalTeardown() {
  const dir = process.env.SMART_BFF_TEST_TMPDIR;
  if (dir) rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
};
