/**
 * Client authentication at the token endpoint, for every request that goes there (the code exchange, refresh,
 * revocation, backend services' client_credentials): public (none), confidential symmetric (a client secret,
 * HTTP Basic or in the body) and confidential asymmetric (private_key_jwt). This is the one place that decides
 * how our credentials are sent: oauth-config.ts builds every openid-client Configuration from a
 * ClientCredentials through clientAuth() below.
 *
 * The assertion follows SMART exactly: header alg (RS384/ES384), kid and typ "JWT"; claims iss = sub = client
 * id, aud = the token endpoint URL, exp five minutes ahead at most, a fresh jti. oauth4webapi's defaults differ
 * (aud = issuer, no typ), so they are overridden here.
 */
import * as client from 'openid-client';
import type { Registration } from '../config.js';
import type { ClientKey } from '../keys.js';

/** Assertions live well under SMART's five-minute ceiling. */
export const ASSERTION_LIFETIME_SECONDS = 240;

export type ClientAuthMethod = 'none' | 'client_secret_basic' | 'client_secret_post' | 'private_key_jwt';

/** Who we are at a token endpoint: what any request there needs to authenticate. Holds secrets: never logged. */
export interface ClientCredentials {
  readonly clientId: string;
  readonly method: ClientAuthMethod;
  /** client_secret_basic and client_secret_post. */
  readonly secret?: string;
  /** private_key_jwt. */
  readonly key?: ClientKey;
  /** Extra JOSE header members of the assertion (backend services' `jku`). */
  readonly assertionHeader?: Readonly<Record<string, string>>;
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
    ...(reg.key ? { key: reg.key } : {}),
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
      return client.ClientSecretBasic(required(creds.secret, creds, 'a client secret'));
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
