/**
 * A strict front for the sandbox's token and revocation endpoints: a real HTTP server that the sandbox's SMART
 * configuration names as its `token_endpoint` and `revocation_endpoint`, and that passes each request on to
 * oidc-provider once it has done what stricter real servers do.
 *
 * - Raw Basic credentials (`rawBasic`): like the SMART reference launcher and many EHRs, it Base64-decodes the
 *   Authorization header, splits at the first ':' and compares the bytes with the registered client id and secret
 *   WITHOUT form-decoding them. On a mismatch it answers 401 `invalid_client` with a WWW-Authenticate challenge
 *   ("Invalid client_id in the basic auth header") and passes nothing on. When they match, it passes the request
 *   on with the same credentials encoded the way oidc-provider decodes them, so the tokens are real.
 * - Re-issued ID tokens (`idTokens`): every id_token of a token response is signed again with the front's own
 *   RSA key, published at `<front>/jwks` (name it as the sandbox's `jwks_uri`), after `tamper` has had a go at its
 *   header and claims (a wrong nonce, iss, aud, an expired one, a foreign key, `alg: none`…). Untampered, the
 *   launch succeeds: the front is a normal authorization server that signs real tokens.
 *
 * Every request is recorded (path, grant type, what happened to its credentials, status) so a test can count
 * what reached the token endpoint.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as jose from 'jose';

export interface FrontRequest {
  path: string;
  grantType: string | null;
  /** What the front made of the Authorization header. */
  basic: 'absent' | 'accepted' | 'refused';
  status: number;
}

export interface IdTokenTamper {
  header?: Record<string, unknown>;
  claims?: Record<string, unknown>;
  /** `front` (default): the published key; `rogue`: a key that is not in the JWKS (same kid); `none`: unsigned. */
  signWith?: 'front' | 'rogue' | 'none';
}

export interface TokenFront {
  url: string;
  tokenEndpoint: string;
  revocationEndpoint: string;
  jwksUri: string;
  requests: FrontRequest[];
  /** The registered clients whose raw Basic credentials are compared (a test may change a secret, as an EHR rotates it). */
  rawBasic: { clientId: string; secret: string }[] | undefined;
  /** Where requests go once accepted (the sandbox's own endpoints). */
  setUpstream(upstream: { token: string; revocation: string }): void;
  /** Changes the next re-issued id_tokens (undefined: sign them as they are). */
  tamper: ((claims: jose.JWTPayload) => IdTokenTamper) | undefined;
  /** Adds an id_token with these claims (signed with the front's key) to token responses that have none. */
  inject: jose.JWTPayload | undefined;
  /** Every id_token the front handed out, to prove they never reach a log or a page. */
  issued: string[];
  close(): Promise<void>;
}

export interface TokenFrontOptions {
  /** Clients whose Basic credentials are compared raw. Without it, the Authorization header passes as it came. */
  rawBasic?: { clientId: string; secret: string }[];
  /** Re-issue id_tokens with the front's key (published at /jwks). */
  idTokens?: boolean;
}

export const FRONT_KID = 'front-rs256';

export async function startTokenFront(opts: TokenFrontOptions = {}): Promise<TokenFront> {
  const { privateKey, publicKey } = await jose.generateKeyPair('RS256', { extractable: true });
  const rogue = (await jose.generateKeyPair('RS256')).privateKey;
  const publicJwk = { ...(await jose.exportJWK(publicKey)), kid: FRONT_KID, alg: 'RS256', use: 'sig' };
  let upstream: { token: string; revocation: string } | undefined;
  const requests: FrontRequest[] = [];

  const front: TokenFront = {
    url: '', tokenEndpoint: '', revocationEndpoint: '', jwksUri: '', requests, rawBasic: opts.rawBasic,
    setUpstream: (u) => { upstream = u; },
    tamper: undefined,
    inject: undefined,
    issued: [],
    close: () => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }),
  };

  async function reissue(idToken: string): Promise<string> {
    const original = jose.decodeJwt(idToken);
    const t = front.tamper?.(original) ?? {};
    const claims = { ...original, ...t.claims };
    for (const [k, v] of Object.entries(t.claims ?? {})) if (v === undefined) delete (claims as Record<string, unknown>)[k];
    if (t.signWith === 'none') return new jose.UnsecuredJWT(claims).encode();
    const header = { alg: 'RS256', kid: FRONT_KID, typ: 'JWT', ...t.header } as jose.JWTHeaderParameters;
    return new jose.SignJWT(claims).setProtectedHeader(header).sign(t.signWith === 'rogue' ? rogue : privateKey);
  }

  const server = http.createServer(async (req, res) => {
    const path = new URL(req.url ?? '/', 'http://front').pathname;
    if (req.method === 'GET' && path === '/jwks') {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: [publicJwk] }));
      return;
    }
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = Buffer.concat(chunks).toString('utf8');
    const grantType = new URLSearchParams(body).get('grant_type');
    const record = (basic: FrontRequest['basic'], status: number) => requests.push({ path, grantType, basic, status });
    const target = path === '/token' ? upstream?.token : path === '/revocation' ? upstream?.revocation : undefined;
    if (req.method !== 'POST' || !target) {
      res.writeHead(404).end();
      return;
    }

    const headers: Record<string, string> = { 'content-type': req.headers['content-type'] ?? 'application/x-www-form-urlencoded', accept: 'application/json' };
    let basic: FrontRequest['basic'] = 'absent';
    const authorization = req.headers.authorization;
    if (authorization && front.rawBasic) {
      // As servers that do not form-decode: Base64, split at the first ':', compare the bytes.
      const m = /^Basic ([A-Za-z0-9+/=]+)$/.exec(authorization);
      const decoded = m ? Buffer.from(m[1]!, 'base64').toString('utf8') : '';
      const i = decoded.indexOf(':');
      const id = i === -1 ? undefined : decoded.slice(0, i);
      const secret = i === -1 ? undefined : decoded.slice(i + 1);
      const client = front.rawBasic.find((c) => c.clientId === id);
      if (!client || client.secret !== secret) {
        const description = client ? 'Invalid client_secret in the basic auth header' : 'Invalid client_id in the basic auth header';
        record('refused', 401);
        res.writeHead(401, {
          'content-type': 'application/json',
          'www-authenticate': `Basic realm="token", error="invalid_client", error_description="${description}"`,
        }).end(JSON.stringify({ error: 'invalid_client', error_description: description }));
        return;
      }
      basic = 'accepted';
      // oidc-provider form-decodes: hand it the same credentials in the encoding it reads.
      headers.authorization = `Basic ${Buffer.from(`${encodeURIComponent(client.clientId)}:${encodeURIComponent(client.secret)}`).toString('base64')}`;
    } else if (authorization) {
      headers.authorization = authorization;
    }

    const answer = await fetch(target, { method: 'POST', headers, body });
    let text = await answer.text();
    if (opts.idTokens && path === '/token' && answer.status === 200) {
      const json = JSON.parse(text) as Record<string, unknown>;
      if (typeof json.id_token === 'string') json.id_token = await reissue(json.id_token);
      else if (front.inject) {
        json.id_token = await new jose.SignJWT(front.inject).setProtectedHeader({ alg: 'RS256', kid: FRONT_KID, typ: 'JWT' }).sign(privateKey);
      }
      if (typeof json.id_token === 'string') front.issued.push(json.id_token);
      text = JSON.stringify(json);
    }
    record(basic, answer.status);
    const out: Record<string, string> = { 'content-type': answer.headers.get('content-type') ?? 'application/json', 'cache-control': 'no-store' };
    const challenge = answer.headers.get('www-authenticate');
    if (challenge) out['www-authenticate'] = challenge;
    res.writeHead(answer.status, out).end(text);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  Object.assign(front, { url, tokenEndpoint: `${url}/token`, revocationEndpoint: `${url}/revocation`, jwksUri: `${url}/jwks` });
  return front;
}
