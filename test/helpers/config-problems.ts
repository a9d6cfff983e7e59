/** The problems loadConfig reports for an environment (it must refuse it), for tests of startup validation. */
import { ConfigError, loadConfig } from '../../src/config.js';

/** A SESSION_SECRET that passes the strength check. */
export const STRONG_SECRET = 'q8Yt3vN0pLw2Zr7XcB5mKd9HsJ4fGa1e-Ux6';

export async function configProblems(env: Record<string, string>): Promise<string[]> {
  try {
    await loadConfig(env);
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  throw new Error('expected a ConfigError');
}
