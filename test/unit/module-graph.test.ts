/**
 * The layering of src/, read from the source: no runtime import cycles anywhere (config.ts and
 * backend-services/config.ts once imported each other through the key parser); the configuration, which
 * everything else builds on, loads nothing of the SMART protocol code; the protocol code (smart/) loads no route
 * handler (routes/).
 */
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cycles, importGraph, reachable } from '../helpers/import-graph.js';

const SRC = fileURLToPath(new URL('../../src', import.meta.url));
const graph = importGraph(SRC);

test('the reader: value imports and re-exports are edges; type-only imports are not', () => {
  const dir = mkdtempSync(join(tmpdir(), 'graph-'));
  mkdirSync(join(dir, 'sub'));
  writeFileSync(join(dir, 'a.ts'), "import type { B } from './sub/b.js';\nimport { type C } from './c.js';\nexport const a = 1;\n");
  writeFileSync(join(dir, 'sub/b.ts'), "import { a } from '../a.js';\nexport type B = number;\nexport const b = a;\n");
  writeFileSync(join(dir, 'c.ts'), "export { b } from './sub/b.js';\nexport type C = string;\n");
  const g = importGraph(dir);
  expect(g.get('a.ts')).toEqual([]);
  expect(g.get('sub/b.ts')).toEqual(['a.ts']);
  expect(g.get('c.ts')).toEqual(['sub/b.ts']);
  expect(cycles(g)).toEqual([]);
  writeFileSync(join(dir, 'a.ts'), "import { C } from './c.js';\nexport const a = 1;\n");
  expect(cycles(importGraph(dir))).toEqual([['a.ts', 'c.ts', 'sub/b.ts', 'a.ts']]);
  expect([...reachable(importGraph(dir), 'a.ts').keys()]).toEqual(['a.ts', 'c.ts', 'sub/b.ts']);
});

test('the graph of src/ is read: config.ts imports the key parser and the env schema', () => {
  expect(graph.get('config.ts')).toEqual(expect.arrayContaining(['keys.ts', 'env-schema.ts', 'backend-services/config.ts']));
});

test('src/ has no runtime import cycle', () => {
  expect(cycles(graph).map((c) => c.join(' → '))).toEqual([]);
});

test('config.ts loads nothing from smart/ (the configuration is below the protocol code)', () => {
  const fromConfig = [...reachable(graph, 'config.ts')].filter(([m]) => m.startsWith('smart/')).map(([, path]) => path.join(' → '));
  expect(fromConfig).toEqual([]);
});

test('smart/ (protocol) loads nothing from routes/ (the handlers that use it)', () => {
  const leaks = [...graph.keys()].filter((m) => m.startsWith('smart/')).flatMap((m) =>
    [...reachable(graph, m)].filter(([n]) => n.startsWith('routes/')).map(([, path]) => path.join(' → ')));
  expect(leaks).toEqual([]);
});
