// Records every module a process loads, for tests that assert what production start-up never imports.
// Use: node --import tsx --import ./test/helpers/module-trace.mjs src/server.ts, with MODULE_TRACE_FILE set.
//  - ES modules: a resolve hook (module.register, in the loader thread) appends each resolved URL as it loads;
//  - CommonJS: at exit, every file in the require cache (CommonJS packages load their dependencies with
//    require(), which the ES module hooks of Node 20 do not see).
import { appendFileSync } from 'node:fs';
import { createRequire, register } from 'node:module';

const file = process.env.MODULE_TRACE_FILE;
if (!file) throw new Error('module-trace: set MODULE_TRACE_FILE');

const hooks = `
import { appendFileSync } from 'node:fs';
let out;
export async function initialize(data) { out = data.file; }
export async function resolve(specifier, context, next) {
  const r = await next(specifier, context);
  appendFileSync(out, 'esm ' + r.url + '\\n');
  return r;
}`;
register(`data:text/javascript,${encodeURIComponent(hooks)}`, { data: { file } });

const cache = createRequire(import.meta.url).cache;
process.on('exit', () => {
  appendFileSync(file, Object.keys(cache).map((f) => `cjs file://${f}\n`).join(''));
});
