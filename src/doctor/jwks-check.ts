/**
 * Is our public key where the EHR will look for it? Fetches a JWKS URL (the server's own
 * /.well-known/jwks.json, the assertion's `jku`, or the URL registered at the EHR) with a timeout and a size
 * cap, and looks for our key's `kid` holding the same public key. Only public members are read or named.
 */
import type { ClientKey } from '../keys.js';
import { describeNetworkError, isTimeout } from '../http/network-errors.js';
import type { DoctorCheck } from './model.js';
import type { JwksUrl } from './targets.js';
import { readBodyAtMost } from '../http/capped-body.js';

const MAX_BYTES = 256 * 1024;

const WHERE: Record<JwksUrl['source'], string> = {
  public_url: 'this server\'s JWKS (PUBLIC_URL/.well-known/jwks.json, where an EHR registered with the JWKS URL fetches our keys)',
  jku: 'the JWKS URL named in our assertions (jku)',
  registered: 'the JWKS URL registered at the EHR (--jwks-url)',
};

function fixFor(source: JwksUrl['source'], what: 'unreachable' | 'missing'): string {
  if (source === 'public_url') {
    return what === 'unreachable'
      ? 'The server publishes every configured key there: start or deploy it with this configuration, and check PUBLIC_URL. On a first deploy, run the doctor again once the server is up (or --skip jwks_url until then); if the EHR holds the key by value instead, this URL does not matter to it.'
      : 'The server publishes the keys of its configuration: the running server has another configuration. Deploy this one before the EHR needs the key; a new key is best published first (JWKS_EXTRA_KEYS_FILE) for one cache lifetime, then used.';
  }
  return what === 'unreachable'
    ? 'The EHR fetches this URL to verify our assertions: make it reachable over https, or register the key at the EHR by value.'
    : 'Publish the public key there (the .jwks.json that `smart-bff keys generate` writes, or this server\'s /.well-known/jwks.json), keeping the keys that are still in use.';
}

export async function jwksUrlCheck(j: JwksUrl, key: ClientKey, opts: { timeoutMs: number; fetch?: typeof fetch }): Promise<DoctorCheck> {
  const where = `${WHERE[j.source]}, ${j.url}`;
  const fail = (what: 'unreachable' | 'missing', message: string): DoctorCheck => ({ id: 'jwks_url', status: 'error', message, fix: fixFor(j.source, what) });
  let body: unknown;
  try {
    const res = await (opts.fetch ?? fetch)(j.url, { headers: { accept: 'application/json' }, signal: AbortSignal.timeout(opts.timeoutMs) });
    if (!res.ok) {
      await res.body?.cancel();
      return fail('unreachable', `${capitalize(where)}: answered ${res.status}.`);
    }
    const declared = Number(res.headers.get('content-length') ?? '0');
    if (declared > MAX_BYTES) {
      await res.body?.cancel();
      return fail('unreachable', `${capitalize(where)}: larger than ${MAX_BYTES} bytes.`);
    }
    const text = await readBodyAtMost(res, MAX_BYTES);
    if (text === undefined) return fail('unreachable', `${capitalize(where)}: larger than ${MAX_BYTES} bytes.`);
    body = JSON.parse(text);
  } catch (err) {
    if (err instanceof SyntaxError) return fail('unreachable', `${capitalize(where)}: not JSON.`);
    return fail('unreachable', `${capitalize(where)}: could not be fetched (${isTimeout(err) ? `no answer within ${opts.timeoutMs} ms` : describeNetworkError(err)}).`);
  }
  const keys = (body as { keys?: unknown } | null)?.keys;
  if (!Array.isArray(keys)) return fail('unreachable', `${capitalize(where)}: not a JWK Set (no "keys" list).`);
  const kids = keys.map((k: { kid?: unknown }) => (typeof k?.kid === 'string' ? k.kid : '(no kid)'));
  const found = keys.find((k: { kid?: unknown }) => k?.kid === key.kid) as Record<string, unknown> | undefined;
  if (!found) return fail('missing', `${capitalize(where)}: does not hold our key ${key.kid} (${key.alg}); it holds ${kids.length ? kids.join(', ') : 'no keys'}.`);
  if (!samePublicKey(found, key.publicJwk as Record<string, unknown>)) {
    return fail('missing', `${capitalize(where)}: holds a key with our kid ${key.kid}, but another public key: the server would refuse our signatures.`);
  }
  return { id: 'jwks_url', status: 'ok', message: `${capitalize(where)}: holds our key ${key.kid} (${key.alg}), the same public key.` };
}


function samePublicKey(a: Record<string, unknown>, b: Record<string, unknown>): boolean {
  if (a.kty !== b.kty) return false;
  const members = a.kty === 'RSA' ? ['n', 'e'] : a.kty === 'EC' ? ['crv', 'x', 'y'] : undefined;
  return Boolean(members?.every((m) => typeof a[m] === 'string' && a[m] === b[m]));
}

function capitalize(s: string): string {
  return s.charAt(0).toUpperCase() + s.slice(1);
}
