/** What the SMART route handlers need, built once in createApp and passed in (no module-level state). */
import type { Config } from '../config.js';
import type { Logger } from '../log.js';
import type { TokenStore } from '../session/token-store.js';
import type { DiscoveryCache } from './discovery.js';
import type { Registry } from './registry.js';
import type { CallbackDeduper, RecentCodes } from './replay-guards.js';
import type { Metrics } from '../observability/metrics.js';

export interface SmartDeps {
  config: Config;
  logger: Logger;
  registry: Registry;
  discovery: DiscoveryCache;
  tokenStore: TokenStore;
  recentCodes: RecentCodes;
  callbacks: CallbackDeduper;
  metrics: Metrics;
}
