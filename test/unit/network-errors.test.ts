/**
 * The one reading of wire failures (http/network-errors.ts), on the errors the real clients throw: fetch
 * (undici) against a closed port and a server that never answers, and openid-client's token request timing out.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as client from 'openid-client';
import { describeNetworkError, isNetworkError, isTimeout } from '../../src/http/network-errors.js';
import { freePort } from '../helpers/net.js';

let hanging: http.Server;
let hangingUrl: string;
beforeAll(async () => {
  hanging = http.createServer(() => undefined); // accepts, never answers
  await new Promise<void>((r) => hanging.listen(0, '127.0.0.1', r));
  hangingUrl = `http://127.0.0.1:${(hanging.address() as AddressInfo).port}`;
});
afterAll(async () => {
  hanging.closeAllConnections();
  await new Promise((r) => hanging.close(r));
});

async function thrown(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (err) {
    return err;
  }
  throw new Error('expected a rejection');
}

test('fetch to a closed port: a network error, "connection refused", not a timeout', async () => {
  const err = await thrown(fetch(`http://127.0.0.1:${await freePort()}/`));
  expect(isNetworkError(err)).toBe(true);
  expect(isTimeout(err)).toBe(false);
  expect(describeNetworkError(err)).toBe('connection refused');
});

test('fetch with AbortSignal.timeout to a server that never answers: a timeout', async () => {
  const err = await thrown(fetch(hangingUrl, { signal: AbortSignal.timeout(200) }));
  expect(isTimeout(err)).toBe(true);
  expect(describeNetworkError(err)).toBe('timeout');
});

test('an abort that is not a timeout (a cancelled job) is neither a timeout nor a network error', async () => {
  const cancel = new AbortController();
  const pending = fetch(hangingUrl, { signal: cancel.signal });
  setTimeout(() => cancel.abort(), 50);
  const err = await thrown(pending);
  expect(isTimeout(err)).toBe(false);
  expect(isNetworkError(err)).toBe(false);
});

test('openid-client wraps a token request timeout (ClientError OAUTH_TIMEOUT): still a timeout', async () => {
  const config = new client.Configuration({ issuer: hangingUrl, token_endpoint: `${hangingUrl}/token` }, 'c', undefined, client.None());
  client.allowInsecureRequests(config);
  config.timeout = 1;
  const err = await thrown(client.clientCredentialsGrant(config, { scope: 'system/*.rs' }));
  expect(err).toBeInstanceOf(client.ClientError);
  expect((err as Error).name).not.toBe('TimeoutError'); // the top-level name alone does not say it
  expect(isTimeout(err)).toBe(true);
  expect(describeNetworkError(err)).toBe('timeout');
});

test('openid-client passes fetch\'s network failure through: a network error with its cause', async () => {
  const base = `http://127.0.0.1:${await freePort()}`;
  const config = new client.Configuration({ issuer: base, token_endpoint: `${base}/token` }, 'c', undefined, client.None());
  client.allowInsecureRequests(config);
  const err = await thrown(client.clientCredentialsGrant(config, { scope: 'system/*.rs' }));
  expect(isNetworkError(err)).toBe(true);
  expect(describeNetworkError(err)).toBe('connection refused');
});

test('an ordinary error is neither', () => {
  expect(isTimeout(new Error('boom'))).toBe(false);
  expect(isNetworkError(new Error('boom'))).toBe(false);
  expect(describeNetworkError(new Error('boom'))).toBe('network error');
});
