// `npm run build`, after tsc: dist/server.js, what `npm start`, Heroku's Procfile and App Engine's entrypoint run,
// made into one ES module holding the server and the packages it loads (esbuild), instead of some 800 modules
// that Node would find, read and link one by one at every start: that was most of the start-up time. Code
// loaded only on demand stays apart, in chunks beside it (dist/server.*-<hash>.js): the Redis client (REDIS_URL)
// and the development sandbox, whose own packages (@medplum/*, oidc-provider) are not bundled at all: they read
// their own files at run time and are never loaded in production. The rest of dist/ (tsc's output) is what the
// CLI runs. A source map (dist/server.js.map) maps the bundle back to src/: run with
// NODE_OPTIONS=--enable-source-maps for TypeScript lines in stack traces (Node then parses the map at start-up,
// some 0.3 s, so it is not the default).
//   node scripts/bundle-server.mjs [--outdir DIR]   (default dist; tests bundle into a directory of their own)
import { build } from 'esbuild';
import { readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const at = process.argv.indexOf('--outdir');
const outdir = at === -1 ? `${root}dist` : process.argv[at + 1];

// The chunks of an earlier build (their names carry a hash of their content).
try {
  for (const f of readdirSync(outdir)) if (/^server\..+-[A-Z0-9]{8}\.js(\.map)?$/.test(f)) rmSync(join(outdir, f));
} catch {
  // no outdir yet
}

/**
 * Two packages the server loads have large parts it never uses, which Node would parse at every start: zod's
 * message locales (English is all the server speaks) and iconv-lite's charset tables (express's body-parser
 * loads them; the server's JSON bodies are UTF-8). The bundle gets small stand-ins (scripts/bundle-stubs/, each
 * saying what it keeps); tsc's output in dist/, the CLI and the tests use the packages themselves.
 */
const lighterPackages = {
  name: 'lighter-packages',
  setup(b) {
    b.onResolve({ filter: /^\.\.\/locales\/index\.js$/ }, (args) => (/[\\/]zod[\\/]v4[\\/](classic|core)[\\/]/.test(args.importer) ? { path: join(root, 'scripts/bundle-stubs/zod-locales.js') } : undefined));
    b.onResolve({ filter: /^iconv-lite$/ }, () => ({ path: join(root, 'scripts/bundle-stubs/iconv-lite.cjs') }));
  },
};

await build({
  absWorkingDir: root,
  entryPoints: ['src/server.ts'],
  outdir,
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20.19',
  // Beside server.js, so that paths relative to a module (app.ts's ../views) mean the same in any of them.
  chunkNames: 'server.[name]-[hash]',
  external: ['@medplum/*', 'oidc-provider'],
  // CommonJS packages call require() for Node's own modules; an ES module has none of its own.
  banner: { js: "import { createRequire as __smartBffCreateRequire } from 'node:module'; const require = __smartBffCreateRequire(import.meta.url);" },
  sourcemap: true,
  minifyWhitespace: true,
  minifySyntax: true,
  sourcesContent: false,
  logLevel: 'warning',
  plugins: [lighterPackages],
});
