/** What the SMART route handlers need, built once in createApp and passed in (no module-level state). */
import type { Config } from '../config.js';
import type { Logger } from '../log.js';
import type { TokenStore } from '../session/token-store.js';
import type { TransactionStore } from '../session/transaction-store.js';
import type { DiscoveryCache } from './discovery.js';
import type { IdTokenVerifier } from './id-token.js';
import type { Registry } from './registry.js';
import type { CallbackDeduper, RecentCodes } from '../routes/replay-guards.js';
import type { Metrics } from '../observability/metrics.js';
import type { ContextEndings } from './context-endings.js';

export interface SmartDeps {
  config: Config;
  logger: Logger;
  registry: Registry;
  discovery: DiscoveryCache;
  tokenStore: TokenStore;
  /** Pending launches, apart from sessions (keyed by state, bound to the browser). */
  transactions: TransactionStore;
  /** Verifies id_token signatures with each server's jwks_uri (key sets cached per URL). */
  idTokens: IdTokenVerifier;
  recentCodes: RecentCodes;
  callbacks: CallbackDeduper;
  metrics: Metrics;
  /** Ends launch contexts: takes their token sets and revokes their tokens in the background. */
  endings: ContextEndings;
}
