/**
 * Does our client authentication fit this authorization server? Pure checks of a SMART configuration against
 * one client's credentials, used at discovery (a warning, once per issuer and registration), in the diagnosis of
 * `invalid_client` (the code exchange, refresh and the backend token client) and by `smart-bff doctor`:
 *
 *   - authMethodCheck: is our method (client_secret_basic, client_secret_post, private_key_jwt) among the
 *     advertised `token_endpoint_auth_methods_supported`?
 *   - signingAlgCheck: is our key's algorithm (RS384/ES384) among the advertised
 *     `token_endpoint_auth_signing_alg_values_supported`?
 *   - basicEncodingCheck: would our client id or secret be sent differently in the other client_secret_basic
 *     encoding (form vs raw), and so is the encoding a possible cause of `invalid_client`?
 *
 * Each takes the SMART configuration (or nothing, for the encoding) and the credentials, and answers with a
 * status: `ok`, `warning` (it may well fail: say so), `unknown` (the server does not advertise the list) or
 * `not_applicable`. Nothing here holds or prints a secret: the encoding check names kinds of character only.
 */
import type { SmartConfiguration } from './discovery.js';
import {
  basicEncodingClasses, describeClasses, type BasicEncoding, type CharacterClass, type ClientCredentials, type SettingsSource,
} from './client-auth.js';

export type CheckStatus = 'ok' | 'warning' | 'unknown' | 'not_applicable';

export interface CompatibilityCheck {
  check: 'auth_method' | 'signing_alg' | 'basic_encoding';
  status: CheckStatus;
  /** One sentence for people (a log line, an error page's likely causes, a doctor's checklist). */
  message: string;
  /** What to change, naming the setting, when status is `warning`. */
  fix?: string;
  /** The server's advertised list, when the check reads one. */
  advertised?: readonly string[];
  /** Ours: the method, the algorithm, or the encoding. */
  ours?: string;
}

type Smart = Pick<SmartConfiguration, 'token_endpoint_auth_methods_supported' | 'token_endpoint_auth_signing_alg_values_supported'>;
type Creds = Pick<ClientCredentials, 'method' | 'clientId' | 'secret' | 'basicEncoding' | 'key' | 'settings'>;

function advertisedList(v: unknown): string[] | undefined {
  return Array.isArray(v) && v.length > 0 && v.every((x) => typeof x === 'string') ? v : undefined;
}

/** The setting that changes one aspect of these credentials, with a value: `SMART_CLIENT_AUTH_ENCODING=raw`. */
export function settingText(settings: SettingsSource | undefined, which: 'encoding' | 'method', value: string): string {
  if (settings?.kind === 'file') {
    return `"${which === 'encoding' ? 'clientAuthEncoding' : 'clientAuthMethod'}": "${value}" (registration "${settings.registration}" in SMART_CONFIG_FILE)`;
  }
  return `${which === 'encoding' ? 'SMART_CLIENT_AUTH_ENCODING' : 'SMART_CLIENT_AUTH_METHOD'}=${value}`;
}

export function authMethodCheck(smart: Smart, creds: Pick<Creds, 'method' | 'settings'>): CompatibilityCheck {
  const ours = creds.method;
  if (ours === 'none') return { check: 'auth_method', status: 'not_applicable', ours, message: 'Public client: no client authentication is sent.' };
  const advertised = advertisedList(smart.token_endpoint_auth_methods_supported);
  if (!advertised) {
    return { check: 'auth_method', status: 'unknown', ours, message: `The server does not advertise token_endpoint_auth_methods_supported; we use ${ours}.` };
  }
  if (advertised.includes(ours)) {
    return { check: 'auth_method', status: 'ok', ours, advertised, message: `Client authentication ${ours} is advertised by the server.` };
  }
  const other = ours === 'client_secret_basic' ? 'client_secret_post' : ours === 'client_secret_post' ? 'client_secret_basic' : undefined;
  return {
    check: 'auth_method', status: 'warning', ours, advertised,
    message: `Client authentication ${ours} is not among the methods the server advertises (${advertised.join(', ')}).`,
    fix: other && advertised.includes(other)
      ? `Set ${settingText(creds.settings, 'method', other)}, or check the client type registered at the EHR.`
      : `Register the client at the EHR with one of ${advertised.join(', ')} (and configure its secret or key here).`,
  };
}

export function signingAlgCheck(smart: Smart, creds: Pick<Creds, 'method' | 'key'>): CompatibilityCheck {
  if (creds.method !== 'private_key_jwt' || !creds.key) {
    return { check: 'signing_alg', status: 'not_applicable', message: 'No client assertion is signed (not private_key_jwt).' };
  }
  const ours = creds.key.alg;
  const advertised = advertisedList(smart.token_endpoint_auth_signing_alg_values_supported);
  if (!advertised) {
    return { check: 'signing_alg', status: 'unknown', ours, message: `The server does not advertise token_endpoint_auth_signing_alg_values_supported; our assertions are signed with ${ours}.` };
  }
  if (advertised.includes(ours)) {
    return { check: 'signing_alg', status: 'ok', ours, advertised, message: `Our assertion algorithm ${ours} is advertised by the server.` };
  }
  const alternative = (['RS384', 'ES384'] as const).find((a) => a !== ours && advertised.includes(a));
  return {
    check: 'signing_alg', status: 'warning', ours, advertised,
    message: `Our client assertions are signed with ${ours} (key ${creds.key.kid}), which is not among the algorithms the server advertises for them (token_endpoint_auth_signing_alg_values_supported: ${advertised.join(', ')}).`,
    fix: alternative
      ? `Use a key for ${alternative} (${alternative === 'RS384' ? 'RSA, at least 2048 bits' : 'EC P-384'}: \`npx smart-bff keys generate --alg ${alternative}\`) and register its public key at the EHR.`
      : `The server advertises none of SMART's algorithms (RS384, ES384); ask the EHR which algorithm it accepts for client assertions.`,
  };
}

/** What in the client id and secret is sent differently by the two Basic encodings (kinds of character only). */
export interface BasicEncodingDifference {
  encoding: BasicEncoding;
  clientId: CharacterClass[];
  secret: CharacterClass[];
}

export function basicEncodingDifference(creds: Pick<Creds, 'method' | 'clientId' | 'secret' | 'basicEncoding'>): BasicEncodingDifference | undefined {
  if (creds.method !== 'client_secret_basic') return undefined;
  return { encoding: creds.basicEncoding ?? 'form', clientId: basicEncodingClasses(creds.clientId), secret: basicEncodingClasses(creds.secret ?? '') };
}

export function basicEncodingCheck(creds: Creds): CompatibilityCheck {
  const diff = basicEncodingDifference(creds);
  if (!diff) return { check: 'basic_encoding', status: 'not_applicable', message: 'Not client_secret_basic: the Basic encoding does not apply.' };
  const ours = diff.encoding;
  if (!diff.clientId.length && !diff.secret.length) {
    return {
      check: 'basic_encoding', status: 'ok', ours,
      message: 'The client id and secret are sent as the same bytes in both client_secret_basic encodings (form and raw): the encoding cannot be why the server refuses them.',
    };
  }
  const parts = [
    diff.clientId.length ? `the client id contains ${describeClasses(diff.clientId)}` : '',
    diff.secret.length ? `the secret contains ${describeClasses(diff.secret)}` : '',
  ].filter(Boolean).join(' and ');
  const other: BasicEncoding = ours === 'form' ? 'raw' : 'form';
  const rawImpossible = other === 'raw' && diff.clientId.includes('colon');
  const how = ours === 'form'
    ? 'We send them form-encoded (RFC 6749), as %XX; a server that compares the credentials without decoding them refuses them.'
    : 'We send them raw, as configured; a server that form-decodes them (RFC 6749) reads \'+\' as a space and \'%\' as the start of an escape.';
  const post = settingText(creds.settings, 'method', 'client_secret_post');
  return {
    check: 'basic_encoding', status: 'warning', ours,
    message: `The client_secret_basic encoding may not be the one this server expects: ${parts}. ${how}`,
    fix: rawImpossible ? `Try ${post} (a client id with ':' cannot be sent raw).` : `Try ${settingText(creds.settings, 'encoding', other)}, or ${post}.`,
  };
}

/** Every check for these credentials against this server (the doctor's list). */
export function clientCompatibility(smart: Smart, creds: Creds): CompatibilityCheck[] {
  return [authMethodCheck(smart, creds), signingAlgCheck(smart, creds), basicEncodingCheck(creds)];
}

/** The server-dependent checks that warn (method and algorithm): what discovery logs once per issuer and registration. */
export function discoveryWarnings(smart: Smart, creds: Creds): CompatibilityCheck[] {
  return [authMethodCheck(smart, creds), signingAlgCheck(smart, creds)].filter((c) => c.status === 'warning');
}

/**
 * What an `invalid_client` (or a 401 at the token endpoint) may be due to on our side, as likely causes: the
 * method or algorithm not advertised, and for client_secret_basic either the encoding (when it matters for these
 * credentials) or a note that it cannot be the cause.
 */
export function invalidClientCauses(smart: Smart, creds: Creds): string[] {
  const out: string[] = [];
  for (const c of [authMethodCheck(smart, creds), signingAlgCheck(smart, creds)]) if (c.status === 'warning') out.push(`${c.message} ${c.fix ?? ''}`.trim());
  const enc = basicEncodingCheck(creds);
  if (enc.status === 'warning') out.push(`${enc.message} ${enc.fix ?? ''}`.trim());
  else if (enc.status === 'ok') out.push(enc.message);
  return out;
}
