/** REDIS_URL and its TLS settings: validated once at startup, every problem with its variable, no password echoed. */
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../../src/config.js';
import { configProblems, STRONG_SECRET } from '../helpers/config-problems.js';
import { makeTestCertificates } from '../helpers/tls-certs.js';

const STRONG = STRONG_SECRET;
const base = { NODE_ENV: 'production', PUBLIC_URL: 'https://app.example.com', SESSION_SECRET: STRONG, SMART_ISS: 'https://fhir.example.com/r4', SMART_CLIENT_ID: 'client-1' };
const certs = makeTestCertificates();
const dir = mkdtempSync(join(tmpdir(), 'smart-bff-redis-config-'));

const problems = configProblems;

describe('Redis settings', () => {
  test('rediss:// verifies the certificate by default, with SNI on the URL host name and a 10 s connect timeout', async () => {
    const c = await loadConfig({ ...base, REDIS_URL: 'rediss://:pw@redis.example.net:6380' });
    expect(c.redis).toEqual({ url: 'rediss://:pw@redis.example.net:6380', tls: true, rejectUnauthorized: true, servername: 'redis.example.net', connectTimeoutMs: 10000 });
    expect(c.redisUrl).toBe('rediss://:pw@redis.example.net:6380');
    expect(c.warnings).toEqual([]);
  });

  test('an IP address is no SNI name; REDIS_TLS_SERVERNAME names the host the certificate was issued for', async () => {
    expect((await loadConfig({ ...base, REDIS_URL: 'rediss://10.0.0.3:6378' })).redis!.servername).toBeUndefined();
    expect((await loadConfig({ ...base, REDIS_URL: 'rediss://10.0.0.3:6378', REDIS_TLS_SERVERNAME: 'redis.internal' })).redis!.servername).toBe('redis.internal');
    expect((await loadConfig({ ...base, REDIS_URL: 'redis://redis.example.net' })).redis).toMatchObject({ tls: false });
    expect((await loadConfig({ ...base, REDIS_URL: 'redis://redis.example.net' })).redis!.servername).toBeUndefined();
  });

  test('REDIS_TLS_REJECT_UNAUTHORIZED=false is allowed in production (Heroku Redis) with a loud warning', async () => {
    const c = await loadConfig({ ...base, REDIS_URL: 'rediss://:pw@ec2-1-2-3-4.compute-1.amazonaws.com:12345', REDIS_TLS_REJECT_UNAUTHORIZED: 'false' });
    expect(c.redis!.rejectUnauthorized).toBe(false);
    expect(c.warnings.some((w) => w.startsWith('SECURITY: REDIS_TLS_REJECT_UNAUTHORIZED=false') && /NOT verified/.test(w) && /REDIS_TLS_CA_FILE/.test(w))).toBe(true);
  });

  test('REDIS_TLS_CA_FILE: read and parsed at startup; a bundle of several certificates is kept whole', async () => {
    const bundle = join(dir, 'bundle.pem');
    writeFileSync(bundle, `# Memorystore server CAs\n${readFileSync(certs.caFile, 'utf8')}\n${readFileSync(certs.certFile, 'utf8')}`);
    const c = await loadConfig({ ...base, REDIS_URL: 'rediss://10.0.0.3:6378', REDIS_TLS_CA_FILE: bundle });
    expect(c.redis!.caFile).toBe(bundle);
    expect(c.redis!.ca!.match(/BEGIN CERTIFICATE/g)).toHaveLength(2);
    expect(c.redis!.ca).not.toContain('Memorystore');
  });

  test('REDIS_TLS_CA_FILE that cannot be read, is not PEM, or does not parse stops startup with the reason', async () => {
    expect(await problems({ ...base, REDIS_URL: 'rediss://h:1', REDIS_TLS_CA_FILE: join(dir, 'missing.pem') })).toEqual([`REDIS_TLS_CA_FILE: cannot read ${JSON.stringify(join(dir, 'missing.pem'))} (ENOENT)`]);
    const key = join(dir, 'key.pem');
    writeFileSync(key, generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'pem', type: 'pkcs8' }));
    const p1 = await problems({ ...base, REDIS_URL: 'rediss://h:1', REDIS_TLS_CA_FILE: key });
    expect(p1).toHaveLength(1);
    expect(p1[0]).toMatch(/^REDIS_TLS_CA_FILE: .* is not a PEM certificate/);
    const broken = join(dir, 'broken.pem');
    writeFileSync(broken, '-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n');
    expect(await problems({ ...base, REDIS_URL: 'rediss://h:1', REDIS_TLS_CA_FILE: broken })).toEqual([`REDIS_TLS_CA_FILE: certificate 1 in ${JSON.stringify(broken)} cannot be parsed`]);
  });

  test('contradictions are refused: a CA with redis:// (no TLS), a CA with verification off', async () => {
    const p = await problems({ ...base, REDIS_URL: 'redis://h:1', REDIS_TLS_CA_FILE: certs.caFile, REDIS_TLS_REJECT_UNAUTHORIZED: 'false' });
    expect(p.some((m) => m.startsWith('REDIS_TLS_CA_FILE: REDIS_URL is redis://'))).toBe(true);
    expect(p.some((m) => m.startsWith('REDIS_TLS_CA_FILE and REDIS_TLS_REJECT_UNAUTHORIZED=false: set one'))).toBe(true);
  });

  test('TLS settings without TLS are named in a warning', async () => {
    expect((await loadConfig({ ...base, REDIS_URL: 'redis://h:1', REDIS_TLS_REJECT_UNAUTHORIZED: 'false' })).warnings).toContain('REDIS_TLS_REJECT_UNAUTHORIZED: ignored, REDIS_URL is redis:// (no TLS)');
    expect((await loadConfig({ ...base, REDIS_TLS_SERVERNAME: 'x' })).warnings).toContain('REDIS_TLS_SERVERNAME: ignored without REDIS_URL');
  });

  test('a REDIS_URL that is not redis:// or rediss:// is refused without echoing it (it carries the password)', async () => {
    const p = await problems({ ...base, REDIS_URL: 'https://user:hunter2-secret@redis.example.net' });
    expect(p).toHaveLength(1);
    expect(p[0]).toMatch(/^REDIS_URL: must be a redis:\/\/ or rediss:\/\/ URL/);
    expect(p.join('\n')).not.toContain('hunter2');
  });

  test('REDIS_CONNECT_TIMEOUT_MS is bounded', async () => {
    expect((await loadConfig({ ...base, REDIS_URL: 'redis://h:1', REDIS_CONNECT_TIMEOUT_MS: '2500' })).redis!.connectTimeoutMs).toBe(2500);
    expect((await problems({ ...base, REDIS_URL: 'redis://h:1', REDIS_CONNECT_TIMEOUT_MS: '5' }))[0]).toMatch(/^REDIS_CONNECT_TIMEOUT_MS:/);
  });
});

