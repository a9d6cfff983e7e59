/**
 * docs/configuration.md and .env.example cannot drift from the program: both are what `npm run docs:config`
 * writes from src/env-schema.ts, and every environment variable src/ reads is declared there (and every declared
 * one is read).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { OUTPUTS } from '../../scripts/config-docs.js';
import { envVarDocs } from '../../src/env-schema.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** Names of environment variables read by this source text: process.env.X, env.X, env['X'], e.X (the parsed schema), commander's .env('X'). */
function envReads(source: string): Set<string> {
  const names = new Set<string>();
  const patterns = [
    /\b(?:process\.env|env|e)\.([A-Z][A-Z0-9_]*)\b/g,
    /\b(?:process\.env|env)\[\s*['"`]([A-Z][A-Z0-9_]*)['"`]\s*\]/g,
    /\.env\(\s*['"`]([A-Z][A-Z0-9_]*)['"`]\s*\)/g,
  ];
  for (const p of patterns) for (const m of source.matchAll(p)) names.add(m[1]!);
  return names;
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((d) => (d.isDirectory() ? sourceFiles(join(dir, d.name)) : /\.(ts|js|mjs)$/.test(d.name) ? [join(dir, d.name)] : []));
}

describe('configuration docs', () => {
  test.each(Object.entries(OUTPUTS))('%s is what `npm run docs:config` writes from src/env-schema.ts', (file, render) => {
    const committed = readFileSync(join(ROOT, file), 'utf8');
    if (committed !== render()) throw new Error(`${file} is out of date with src/env-schema.ts: run \`npm run docs:config\` and commit the result`);
  });

  test('every variable has a description, a group and an example; secrets have no default', () => {
    const vars = envVarDocs();
    expect(vars.length).toBeGreaterThan(40);
    for (const v of vars) {
      expect({ name: v.name, description: v.description.length > 10, example: v.example !== undefined }).toEqual({ name: v.name, description: true, example: true });
      if (v.secret) expect({ name: v.name, default: v.defaultIsValue }).toEqual({ name: v.name, default: false });
    }
  });

  test('the scanner finds reads of each kind (so an empty difference below means something)', () => {
    expect([...envReads("const a = process.env.FOO_1; env['BAR']; e.BAZ; new Option('--x').env('QUX'); env.lower; process.env[name]")].sort()).toEqual(['BAR', 'BAZ', 'FOO_1', 'QUX']);
  });

  test('every environment variable read in src/ and bin/ is declared in src/env-schema.ts, and every declared one is read', () => {
    const declared = new Set(envVarDocs().map((v) => v.name));
    const read = new Map<string, string>();
    for (const file of [...sourceFiles(join(ROOT, 'src')), ...sourceFiles(join(ROOT, 'bin'))]) {
      for (const name of envReads(readFileSync(file, 'utf8'))) read.set(name, file.slice(ROOT.length));
    }
    // proof that reads outside config.ts are seen: the backend-services config and the CLI read these directly
    expect(read.get('BULK_DATA_DIR')).toBe('src/backend-services/config.ts');
    expect(read.has('SMART_BACKEND_ISS')).toBe(true);
    const undeclared = [...read].filter(([name]) => !declared.has(name)).map(([name, file]) => `${name} (read in ${file})`);
    expect(undeclared).toEqual([]);
    const unread = [...declared].filter((name) => !read.has(name));
    expect(unread).toEqual([]);
  });
});
