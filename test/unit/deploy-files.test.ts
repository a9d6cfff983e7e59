/**
 * app.yaml makes the multi-instance choice explicit, and both of its variants are consistent: (A) one instance
 * with the in-memory store (max_instances: 1 with SINGLE_INSTANCE), active as shipped; (B) Memorystore through a
 * VPC connector (rediss:// and the server CA), reached by deleting the (A) lines and uncommenting the (B) lines as
 * the file says. Every variable app.yaml sets is one the program reads.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { envVarDocs } from '../../src/env-schema.js';

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

  test('the Procfile and app.yaml start the same built entry point', () => {
    expect(readFileSync(`${ROOT}Procfile`, 'utf8').trim()).toBe('web: node dist/server.js');
    expect(active(appYaml)).toMatch(/^entrypoint: node dist\/server\.js$/m);
  });
});
