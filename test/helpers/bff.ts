/**
 * Starts the real BFF (createApp) on a real socket at 127.0.0.1 and an ephemeral port, with configuration
 * parsed by loadConfig from an env object, exactly as at startup.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Store } from 'express-session';
import { loadConfig, type Config } from '../../src/config.js';
import { createApp, type App } from '../../src/app.js';
import { captureLogs, type CapturedLogs } from './log-capture.js';
import type { DiscoveryCache } from '../../src/smart/discovery.js';
import type { TokenStore } from '../../src/session/token-store.js';
import type { TransactionStore } from '../../src/session/transaction-store.js';

export const TEST_SESSION_SECRET = 'test-session-secret-0123456789-abcdefghijklmnop';

export interface StartedBff {
  url: string;
  config: Config;
  app: App;
  logs: CapturedLogs;
  server: http.Server;
  close(): Promise<void>;
}

export async function startBff(
  env: Record<string, string>,
  opts: { sessionStore?: Store; tokenStore?: TokenStore; transactionStore?: TransactionStore; discovery?: DiscoveryCache; host?: string; logs?: CapturedLogs; sessionSweepIntervalMs?: number | false } = {},
): Promise<StartedBff> {
  const server = http.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  const url = `http://${opts.host ?? '127.0.0.1'}:${port}`;
  const config = await loadConfig({ NODE_ENV: 'test', PUBLIC_URL: url, SESSION_SECRET: TEST_SESSION_SECRET, ALLOW_INSECURE_HTTP: '1', SANDBOX: 'off', ...env })
    .catch(async (err: unknown) => {
      await new Promise((r) => server.close(r));
      throw err;
    });
  const logs = opts.logs ?? captureLogs();
  const app = createApp({
    config, logger: logs.logger,
    ...(opts.sessionStore ? { sessionStore: opts.sessionStore } : {}),
    ...(opts.tokenStore ? { tokenStore: opts.tokenStore } : {}),
    ...(opts.transactionStore ? { transactionStore: opts.transactionStore } : {}),
    ...(opts.discovery ? { discovery: opts.discovery } : {}),
    ...(opts.sessionSweepIntervalMs !== undefined ? { sessionSweepIntervalMs: opts.sessionSweepIntervalMs } : {}),
  });
  server.on('request', app);
  return {
    url, config, app, logs, server,
    close: () => new Promise<void>((resolve) => {
      app.locals.sessionEndings.close();
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}
