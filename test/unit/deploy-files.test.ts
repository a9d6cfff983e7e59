/**
 * app.yaml makes the multi-instance choice explicit, and both of its variants are consistent: (A) one instance
 * with the in-memory store (max_instances: 1 with SINGLE_INSTANCE), active as shipped; (B) Memorystore through a
 * VPC connector (rediss:// and the server CA), reached by deleting the (A) lines and uncommenting the (B) lines as
 * the file says. Every variable app.yaml sets is one the program reads. `npm start`, the Procfile and app.yaml start
 * the server with one command, whose Node options cap the young generation (docs/deploy.md, "Memory").
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { envVarDocs } from '../../src/env-schema.js';
import { START_COMMAND as START, START_NODE_ARGS } from '../helpers/start-command.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const appYaml = readFileSync(`${ROOT}app.yaml`, 'utf8');

/** The lines that are not comments. */
const active = (yaml: string) => yaml.split('\n').filter((l) => !/^\s*#/.test(l) && l.trim()).join('\n');
/** Variant (B): the (A) lines deleted, the (B) lines uncommented. */
const variantB = (yaml: string) => yaml.split('\n').filter((l) => !/# \(A\)\s*$/.test(l)).map((l) => (/# \(B\)/.test(l) ? l.replace(/^(\s*)# /, '$1').replace(/\s+# \(B\).*$/, '') : l)).join('\n');
const envNames = (yaml: string) => [...active(yaml).replace(/^[\s\S]*?\nenv_variables:\n/, '').matchAll(/^ {2}([A-Z][A-Z0-9_]*):/gm)].map((m) => m[1]!);

describe('app.yaml', () => {
  test('as shipped: (A) one instance, declared to the server with SINGLE_INSTANCE, and no Redis', () => {
    const a = active(appYaml);
    expect(a).toMatch(/^\s+max_instances: 1\b/m);
    expect(a).toMatch(/^\s+SINGLE_INSTANCE: "1"/m);
    expect(a).not.toMatch(/REDIS_URL|vpc_access_connector/);
  });

  test('(B): a VPC connector, rediss:// to Memorystore on 6378 with its server CA; no instance cap and no SINGLE_INSTANCE', () => {
    const b = active(variantB(appYaml));
    expect(b).toMatch(/^vpc_access_connector:\n\s+name: projects\/[^/\s]+\/locations\/[^/\s]+\/connectors\/\S+\n\s+egress_setting: private-ranges-only/m);
    expect(b).toMatch(/^\s+REDIS_URL: "rediss:\/\/[^"]*:6378"/m);
    expect(b).toMatch(/^\s+REDIS_TLS_CA_FILE: "[^"]+\.pem"/m);
    expect(b).not.toMatch(/max_instances|SINGLE_INSTANCE/);
  });

  test('every variable either variant sets is one the program reads', () => {
    const declared = new Set(envVarDocs().map((v) => v.name));
    const names = [...new Set([...envNames(appYaml), ...envNames(variantB(appYaml))])];
    expect(names).toEqual(expect.arrayContaining(['NODE_ENV', 'PUBLIC_URL', 'SINGLE_INSTANCE', 'REDIS_URL', 'REDIS_TLS_CA_FILE']));
    expect(names.filter((n) => !declared.has(n))).toEqual([]);
  });

  test('npm start, the Procfile and app.yaml run one command: the built entry point, with the young generation capped', () => {
    const procfile = /^web: (.+)$/m.exec(readFileSync(`${ROOT}Procfile`, 'utf8'))?.[1];
    const entrypoint = /^entrypoint: (.+)$/m.exec(active(appYaml))?.[1];
    expect(procfile).toBe(START);
    expect(entrypoint).toBe(START);
    expect(START).toMatch(/^node (\S+ )*dist\/server\.js$/);
  });
});

describe('the start command\'s Node options', () => {
  // The young generation's size after enough short-lived allocation to grow it to its cap: V8 doubles it, up to the
  // cap, while objects survive (here: a working set of 200,000 small objects renewed again and again).
  const grow = `const a = []; for (let i = 0; i < 3e6; i++) { a.push({ i }); if (a.length > 2e5) a.length = 0; }
    process.stdout.write(String(require('node:v8').getHeapSpaceStatistics().find((s) => s.space_name === 'new_space').space_size));`;
  const youngBytes = (nodeArgs: string[]) => Number(execFileSync(process.execPath, [...nodeArgs, '-e', grow], { encoding: 'utf8' }));

  test('cap each semi-space of the young generation at 8 MB, and Node keeps to it', () => {
    expect(START_NODE_ARGS).toContain('--max-semi-space-size=8');
    expect(youngBytes(START_NODE_ARGS)).toBeLessThanOrEqual(2 * 8 * 2 ** 20);
    // The same allocation with a higher cap grows past 2 x 8 MB: the size above is the option's doing. (Node's own
    // cap depends on the machine's memory: up to 2 x 16 MB on Node 20 and 22, 2 x 32 MB on Node 24.)
    expect(youngBytes(['--max-semi-space-size=32'])).toBeGreaterThan(2 * 8 * 2 ** 20);
  });
});
