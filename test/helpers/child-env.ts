/**
 * The environment a test gives a process it starts with an environment of its own: the machine's basics (PATH,
 * HOME) and the run's temporary directory (TMPDIR, test/global-setup.cjs), so the process's temporary files are
 * removed with the run's. The test adds the variables under test.
 */
import { tmpdir } from 'node:os';

export function childEnv(): Record<string, string> {
  return { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', TMPDIR: tmpdir() };
}
