/**
 * TokenRefresher.freshAtHand (token-refresher.ts), the proxy's fast path: the token set only when the store has it
 * in memory and it is not due a refresh; otherwise nothing, and the caller goes through tokensFor.
 */
import { TokenRefresher } from '../../src/smart/token-refresher.js';
import { MemoryTokenStore, type TokenSet, type TokenStore } from '../../src/session/token-store.js';
import type { SmartDeps } from '../../src/smart/deps.js';
import type { LaunchContextInfo } from '../../src/session/types.js';

const SKEW_SECONDS = 60;
const ctx = { id: 'ctx-1' } as LaunchContextInfo;
const tokens = (expiresInMs: number | undefined): TokenSet => ({
  accessToken: 'at', refreshToken: 'rt', tokenType: 'Bearer', fhirBaseUrl: 'https://ehr.example/fhir', registration: 'default',
  ...(expiresInMs === undefined ? {} : { expiresAt: Date.now() + expiresInMs }),
});
const refresher = (tokenStore: TokenStore) => new TokenRefresher({ tokenStore, config: { tokenRefreshSkewSeconds: SKEW_SECONDS } } as unknown as SmartDeps);

test('a token set in memory and not about to expire is at hand', async () => {
  const store = new MemoryTokenStore();
  for (const set of [tokens(SKEW_SECONDS * 1000 + 30_000), tokens(undefined)]) {
    await store.set(ctx.id, set, 3600);
    expect(refresher(store).freshAtHand(ctx)).toEqual(set);
  }
});

test('a token set within the refresh skew of its expiry, or past it, is not: tokensFor refreshes it', async () => {
  const store = new MemoryTokenStore();
  for (const ms of [SKEW_SECONDS * 1000 - 1000, 1000, -1000]) {
    await store.set(ctx.id, tokens(ms), 3600);
    expect([ms, refresher(store).freshAtHand(ctx)]).toEqual([ms, undefined]);
  }
});

test('none stored, or a store that cannot say without waiting (no peek): not at hand', async () => {
  const store = new MemoryTokenStore();
  expect(refresher(store).freshAtHand(ctx)).toBeUndefined();
  const fresh = tokens(3_600_000);
  const remote = { get: async () => fresh } as unknown as TokenStore;
  expect(refresher(remote).freshAtHand(ctx)).toBeUndefined();
});
