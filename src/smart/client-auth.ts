/**
 * Client authentication for the token endpoint: public (none), confidential symmetric (client secret) and
 * confidential asymmetric (private_key_jwt). The assertion follows SMART exactly: header alg (RS384/ES384),
 * kid and typ "JWT"; claims iss = sub = client id, aud = the token endpoint URL, exp five minutes ahead at most,
 * a fresh jti. oauth4webapi's defaults differ (aud = issuer, no typ), so they are overridden here.
 */
import * as client from 'openid-client';
import type { Registration } from '../config.js';
import type { ClientKey } from '../keys.js';

/** Assertions live well under SMART's five-minute ceiling. */
export const ASSERTION_LIFETIME_SECONDS = 240;

export type ClientAuthMethod = 'none' | 'client_secret_basic' | 'client_secret_post' | 'private_key_jwt';

export function clientAuthMethod(reg: Pick<Registration, 'clientType' | 'clientSecretMethod'>): ClientAuthMethod {
  switch (reg.clientType) {
    case 'public': return 'none';
    case 'confidential-symmetric': return reg.clientSecretMethod ?? 'client_secret_basic';
    case 'confidential-asymmetric': return 'private_key_jwt';
  }
}

export function smartPrivateKeyJwt(key: ClientKey, tokenEndpoint: string, extraHeader: Record<string, string> = {}): client.ClientAuth {
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

export function clientAuthFor(reg: Registration, tokenEndpoint: string): client.ClientAuth {
  switch (reg.clientType) {
    case 'public':
      return client.None();
    case 'confidential-symmetric':
      return reg.clientSecretMethod === 'client_secret_post' ? client.ClientSecretPost(reg.clientSecret) : client.ClientSecretBasic(reg.clientSecret);
    case 'confidential-asymmetric':
      if (!reg.key) throw new Error(`registration ${reg.name} has no private key`);
      return smartPrivateKeyJwt(reg.key, tokenEndpoint);
  }
}
