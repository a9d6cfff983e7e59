/**
 * Client authentication at the token endpoint, for every request that goes there (the code exchange, refresh,
 * revocation, backend services' client_credentials): public (none), confidential symmetric (a client secret,
 * HTTP Basic or in the body) and confidential asymmetric (private_key_jwt). This is the one place that decides
 * how our credentials are sent: oauth-config.ts builds every openid-client Configuration from a
 * ClientCredentials through clientAuth() below.
 *
 * HTTP Basic (client_secret_basic) is ours, not openid-client's: oauth4webapi form-encodes the client id and
 * secret before Base64 and encodes even the characters RFC 3986 leaves alone (`-` `.` `_` `~`, and `!` `*` `'`
 * `(` `)`), so a client id `bff-app` goes as `bff%2Dapp`, which servers that compare the credentials without
 * decoding them (the SMART reference launcher, many EHRs) refuse as an unknown client. Two encodings:
 *
 *   form (default)  RFC 6749 §2.3.1 (form-encode, then Base64), encoding only what a server that form-decodes
 *                   would otherwise read differently or what would break `id:secret` apart: `%` (an escape),
 *                   `+` (a space once decoded), `:` (the separator), the space, control characters and anything
 *                   outside ASCII, each as %XX of its UTF-8 bytes. Every other printable ASCII character (letters,
 *                   digits, `-._~`, `/`, `=`, `!`, `*`, …) goes as it is: form-decoding leaves it unchanged, so
 *                   both kinds of server read the same bytes.
 *   raw             `id:secret` exactly as configured (UTF-8), for servers that compare raw credentials. A client
 *                   id with `:` cannot be sent this way (config.ts refuses it at startup).
 *
 * The two differ only for an id or secret holding one of the characters `form` encodes (basicEncodingClasses()).
 *
 * The assertion follows SMART exactly: header alg (RS384/ES384), kid and typ "JWT"; claims iss = sub = client
 * id, aud = the token endpoint URL, exp five minutes ahead at most, a fresh jti. oauth4webapi's defaults differ
 * (aud = issuer, no typ), so they are overridden here.
 */
import * as client from 'openid-client';
import type { ClientAuthEncoding, Registration } from '../config.js';
import type { ClientKey } from '../keys.js';

/** Assertions live well under SMART's five-minute ceiling. */
export const ASSERTION_LIFETIME_SECONDS = 240;

export type ClientAuthMethod = 'none' | 'client_secret_basic' | 'client_secret_post' | 'private_key_jwt';
/** How client_secret_basic encodes the client id and secret before Base64 (see the top of this file). */
export type BasicEncoding = ClientAuthEncoding;

/** Where a launch registration's settings live, to name them in messages (`SMART_CLIENT_AUTH_ENCODING=raw`). */
export type SettingsSource = { kind: 'env' } | { kind: 'file'; registration: string };

/** Who we are at a token endpoint: what any request there needs to authenticate. Holds secrets: never logged. */
export interface ClientCredentials {
  readonly clientId: string;
  readonly method: ClientAuthMethod;
  /** client_secret_basic and client_secret_post. */
  readonly secret?: string;
  /** client_secret_basic: how the id and secret are encoded (default form). */
  readonly basicEncoding?: BasicEncoding;
  /** private_key_jwt. */
  readonly key?: ClientKey;
  /** Extra JOSE header members of the assertion (backend services' `jku`). */
  readonly assertionHeader?: Readonly<Record<string, string>>;
  /** Where the settings that shape these credentials are configured (launch registrations). */
  readonly settings?: SettingsSource;
}

export function clientAuthMethod(reg: Pick<Registration, 'clientType' | 'clientSecretMethod'>): ClientAuthMethod {
  switch (reg.clientType) {
    case 'public': return 'none';
    case 'confidential-symmetric': return reg.clientSecretMethod ?? 'client_secret_basic';
    case 'confidential-asymmetric': return 'private_key_jwt';
  }
}

/** The credentials of a launch registration (SMART_CLIENT_* or one entry of SMART_CONFIG_FILE). */
export function launchCredentials(reg: Registration): ClientCredentials {
  const method = clientAuthMethod(reg);
  return {
    clientId: reg.clientId,
    method,
    ...(reg.clientSecret !== undefined ? { secret: reg.clientSecret } : {}),
    ...(method === 'client_secret_basic' ? { basicEncoding: reg.clientAuthEncoding ?? 'form' } : {}),
    ...(reg.key ? { key: reg.key } : {}),
    settings: reg.configuredIn === 'file' ? { kind: 'file', registration: reg.name } : { kind: 'env' },
  };
}

/** The credentials of a backend services client: always private_key_jwt, with the registered `jku` if any. */
export function backendCredentials(c: { clientId: string; key: ClientKey; jku?: string }): ClientCredentials {
  return { clientId: c.clientId, method: 'private_key_jwt', key: c.key, ...(c.jku ? { assertionHeader: { jku: c.jku } } : {}) };
}

/** openid-client's ClientAuth for these credentials at this token endpoint (the assertion's `aud`). */
export function clientAuth(creds: ClientCredentials, tokenEndpoint: string): client.ClientAuth {
  switch (creds.method) {
    case 'none':
      return client.None();
    case 'client_secret_basic':
      return clientSecretBasic(creds.clientId, required(creds.secret, creds, 'a client secret'), creds.basicEncoding ?? 'form');
    case 'client_secret_post':
      return client.ClientSecretPost(required(creds.secret, creds, 'a client secret'));
    case 'private_key_jwt':
      return smartPrivateKeyJwt(required(creds.key, creds, 'a private key'), tokenEndpoint, creds.assertionHeader);
  }
}

function required<T>(value: T | undefined, creds: ClientCredentials, what: string): T {
  if (value === undefined) throw new Error(`client ${creds.clientId} (${creds.method}) has no ${what}`);
  return value;
}

/** The characters `form` encodes: `%`, `+`, `:`, and everything but printable ASCII (so the space too). */
const FORM_ENCODED = /[%+:]|[^\x21-\x7e]/gu;

/** One client id or secret as `form` sends it: each character of FORM_ENCODED as %XX of its UTF-8 bytes. */
export function formEncodeCredential(value: string): string {
  return value.replace(FORM_ENCODED, (ch) => [...Buffer.from(ch, 'utf8')].map((b) => `%${b.toString(16).toUpperCase().padStart(2, '0')}`).join(''));
}

/** The value of the Authorization header for client_secret_basic. */
export function basicAuthorization(clientId: string, secret: string, encoding: BasicEncoding): string {
  if (encoding === 'raw' && clientId.includes(':')) throw new Error('a client id with ":" cannot be sent raw in HTTP Basic');
  const pair = encoding === 'raw' ? `${clientId}:${secret}` : `${formEncodeCredential(clientId)}:${formEncodeCredential(secret)}`;
  return `Basic ${Buffer.from(pair, 'utf8').toString('base64')}`;
}

function clientSecretBasic(clientId: string, secret: string, encoding: BasicEncoding): client.ClientAuth {
  return (_as, _client, _body, headers) => {
    headers.set('authorization', basicAuthorization(clientId, secret, encoding));
  };
}

/** Kinds of character whose bytes differ between the `form` and `raw` encodings (a class, never a position). */
export type CharacterClass = 'percent' | 'plus' | 'colon' | 'space' | 'control' | 'non-ascii';
const CLASS_TEXT: Record<CharacterClass, string> = {
  percent: "'%'", plus: "'+'", colon: "':'", space: 'a space', control: 'a control character (a tab or a line break)', 'non-ascii': 'non-ASCII characters',
};

/** Which kinds of character in this value are sent differently by `form` and `raw` (empty: the same bytes either way). */
export function basicEncodingClasses(value: string): CharacterClass[] {
  const found = new Set<CharacterClass>();
  for (const ch of value) {
    if (ch === '%') found.add('percent');
    else if (ch === '+') found.add('plus');
    else if (ch === ':') found.add('colon');
    else if (ch === ' ') found.add('space');
    else if (/[\x00-\x1f\x7f]/.test(ch)) found.add('control');
    else if (ch.codePointAt(0)! > 0x7e) found.add('non-ascii');
  }
  return (Object.keys(CLASS_TEXT) as CharacterClass[]).filter((c) => found.has(c));
}

/** "'+' and a space": a list of character classes for a sentence. */
export function describeClasses(classes: readonly CharacterClass[]): string {
  const words = classes.map((c) => CLASS_TEXT[c]);
  return words.length <= 1 ? (words[0] ?? '') : `${words.slice(0, -1).join(', ')} and ${words.at(-1)}`;
}

function smartPrivateKeyJwt(key: ClientKey, tokenEndpoint: string, extraHeader: Readonly<Record<string, string>> = {}): client.ClientAuth {
  return client.PrivateKeyJwt(
    { key: key.privateKey, kid: key.kid },
    {
      [client.modifyAssertion]: (header, payload) => {
        header.alg = key.alg;
        header.kid = key.kid;
        header.typ = 'JWT';
        Object.assign(header, extraHeader);
        const now = Math.floor(Date.now() / 1000);
        payload.aud = tokenEndpoint;
        payload.iat = now;
        payload.exp = now + ASSERTION_LIFETIME_SECONDS;
        delete payload.nbf;
      },
    },
  );
}
