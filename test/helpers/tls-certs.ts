/**
 * Certificates for TLS tests, made with openssl in a temporary directory: a self-signed CA and a server
 * certificate it signed for localhost and 127.0.0.1. `chainFile` holds the server certificate followed by the
 * CA, as Heroku Redis presents them (a client that does not trust the CA reports SELF_SIGNED_CERT_IN_CHAIN).
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface TestCertificates {
  dir: string;
  caFile: string;
  certFile: string;
  keyFile: string;
  /** Server certificate + CA certificate. */
  chainFile: string;
}

function openssl(args: string[], cwd: string): void {
  const r = spawnSync('openssl', args, { cwd, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`openssl ${args[0]} failed: ${r.stderr}`);
}

export function makeTestCertificates(): TestCertificates {
  const dir = mkdtempSync(join(tmpdir(), 'smart-bff-tls-'));
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  openssl(['req', '-x509', ...ec, '-days', '2', '-subj', '/CN=smart-bff test CA', '-keyout', 'ca.key', '-out', 'ca.crt'], dir);
  openssl(['req', ...ec, '-subj', '/CN=localhost', '-keyout', 'server.key', '-out', 'server.csr'], dir);
  writeFileSync(join(dir, 'server.ext'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n');
  openssl(['x509', '-req', '-in', 'server.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '2', '-extfile', 'server.ext', '-out', 'server.crt'], dir);
  writeFileSync(join(dir, 'chain.crt'), readFileSync(join(dir, 'server.crt'), 'utf8') + readFileSync(join(dir, 'ca.crt'), 'utf8'));
  return { dir, caFile: join(dir, 'ca.crt'), certFile: join(dir, 'server.crt'), keyFile: join(dir, 'server.key'), chainFile: join(dir, 'chain.crt') };
}
