/**
 * Debian's Chromium driven by playwright-core (Playwright's own browser download does not work offline).
 * Tests that need it call `launchChromium()`; when it is missing they fail with the install command, except
 * locally where SKIP_BROWSER_TESTS=1 skips them on purpose.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser } from 'playwright-core';

export const CHROMIUM_PATH = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
export const ARTIFACTS_DIR = fileURLToPath(new URL('../../test-artifacts/', import.meta.url));

export function browserTestsEnabled(): boolean {
  if (process.env.SKIP_BROWSER_TESTS === '1') return false;
  if (!existsSync(CHROMIUM_PATH)) {
    throw new Error(`Chromium not found at ${CHROMIUM_PATH}: install it with "apt-get install chromium" (as .ci/run does) or set SKIP_BROWSER_TESTS=1`);
  }
  return true;
}

export async function launchChromium(extraArgs: string[] = []): Promise<Browser> {
  mkdirSync(ARTIFACTS_DIR, { recursive: true });
  return chromium.launch({
    executablePath: CHROMIUM_PATH,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', ...extraArgs],
  });
}
