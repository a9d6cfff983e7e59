#!/usr/bin/env node
// The `smart-bff` command: the built CLI (dist/) when `npm run build` has run, otherwise the TypeScript source
// through tsx (a dev dependency), so it works from a fresh clone after `npm ci`. The source runs instead of dist/
// when SMART_BFF_FROM_SOURCE=1 (the tests set it), and in a git checkout whose src/ is newer than dist/ (a stale
// build would run old code). Ctrl-C reaches the CLI, which cancels a running export on the server before it exits.
import { existsSync, readdirSync, statSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const built = join(root, 'dist', 'cli', 'main.js');
const source = join(root, 'src', 'cli', 'main.ts');

/** Newest modification time of the TypeScript files under a directory (0 when there is none). */
function newestSource(dir) {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) newest = Math.max(newest, newestSource(path));
    else if (entry.name.endsWith('.ts')) newest = Math.max(newest, statSync(path).mtimeMs);
  }
  return newest;
}

function staleBuild() {
  if (!existsSync(join(root, '.git')) || !existsSync(source)) return false;
  return newestSource(join(root, 'src')) > statSync(built).mtimeMs;
}

let fromSource = process.env.SMART_BFF_FROM_SOURCE === '1' || !existsSync(built);
if (!fromSource && staleBuild()) {
  process.stderr.write('smart-bff: dist/ is older than src/ (run `npm run build`); running the source instead.\n');
  fromSource = true;
}

if (!fromSource) {
  await import(built);
} else {
  // tsx as this package resolves it, whatever the working directory.
  const tsx = import.meta.resolve('tsx');
  const child = spawn(process.execPath, ['--import', tsx, source, ...process.argv.slice(2)], { stdio: 'inherit' });
  for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => child.kill(signal));
  child.on('exit', (code, signal) => process.exit(code ?? (signal === 'SIGINT' ? 130 : 1)));
}
