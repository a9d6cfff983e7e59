/**
 * The tests' temporary files go to one directory per run (test/global-setup.cjs), which the run removes at its end
 * (test/global-teardown.cjs), so they do not pile up in the machine's /tmp.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

describe("the tests' temporary directory", () => {
  it("is the run's own directory, for the tests and for the processes they start", () => {
    const runDir = process.env.SMART_BFF_TEST_TMPDIR;
    expect(runDir).toMatch(/smart-bff-tests-[^/]+$/);
    expect(tmpdir()).toBe(runDir);
    expect(dirname(mkdtempSync(join(tmpdir(), 'probe-')))).toBe(runDir);
    const child = spawnSync(process.execPath, ['-e', 'process.stdout.write(require("node:os").tmpdir())'], { encoding: 'utf8' });
    expect(child.stdout).toBe(runDir);
  });

  it('has the permissions of the directory it stands in for, so a server run as another user can use it', () => {
    const runDir = process.env.SMART_BFF_TEST_TMPDIR!;
    expect((statSync(runDir).mode & 0o7777).toString(8)).toBe((statSync(dirname(runDir)).mode & 0o7777).toString(8));
  });

  it('is removed, with whatever is in it, by the teardown the Jest configuration names', async () => {
    const jestConfig = ((await import(pathToFileURL(join(ROOT, 'jest.config.js')).href)) as { default: { globalTeardown?: string } }).default;
    const teardownPath = jestConfig.globalTeardown?.replace('<rootDir>', ROOT);
    expect(teardownPath).toBeDefined();
    const teardown = ((await import(pathToFileURL(teardownPath!).href)) as { default: () => void }).default;
    const dir = mkdtempSync(join(tmpdir(), 'teardown-probe-'));
    writeFileSync(join(mkdtempSync(join(dir, 'nested-')), 'left-behind.txt'), 'x');
    const runDir = process.env.SMART_BFF_TEST_TMPDIR;
    process.env.SMART_BFF_TEST_TMPDIR = dir;
    try {
      teardown();
    } finally {
      process.env.SMART_BFF_TEST_TMPDIR = runDir;
    }
    expect(existsSync(dir)).toBe(false);
    expect(existsSync(runDir!)).toBe(true);
  });
});
