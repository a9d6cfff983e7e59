/**
 * Process entry: config → (sandbox) → createApp → listen; graceful shutdown on SIGTERM/SIGINT.
 */
import http from 'node:http';
import { ConfigError, loadConfig, type Config, type Registration } from './config.js';
import { createLogger, type Logger } from './log.js';
import { createApp, type AppDeps } from './app.js';
import { connectRedis, createRedisSessionStore, RedisTokenStore, RedisTransactionStore, type RedisClient } from './session/redis-store.js';
import { DEFAULT_SCOPE } from './config.js';

const SHUTDOWN_GRACE_MS = 10_000;

export const SANDBOX_CLIENT_ID = 'smart-bff-dev';

async function main(): Promise<void> {
  let config: Config;
  try {
    config = await loadConfig(process.env);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`smart-bff: cannot start.\n${err.message}\nSee .env.example for every variable.\n`);
      process.exit(1);
    }
    throw err;
  }
  const logger = createLogger({ level: config.logLevel });
  for (const w of config.warnings) logger.warn({ event: 'config.warning' }, w);

  let sandbox: { handler: import('express').RequestHandler; close(): Promise<void> } | undefined;
  if (config.sandbox) {
    const { createSandbox } = await import('./sandbox/index.js');
    const sb = await createSandbox({
      baseUrl: `${config.publicUrl}/sandbox`,
      clients: [{ client_id: SANDBOX_CLIENT_ID, token_endpoint_auth_method: 'none', redirect_uris: [config.redirectUri], launch_uri: `${config.publicUrl}/launch` }],
      keysDir: config.sandboxKeysDir,
      logger: logger.child({ component: 'sandbox' }),
    });
    sandbox = sb;
    const registration: Registration = Object.freeze({
      name: 'sandbox', iss: Object.freeze([sb.fhirBaseUrl]), clientId: SANDBOX_CLIENT_ID, clientType: 'public', scope: DEFAULT_SCOPE, standaloneScope: DEFAULT_SCOPE,
    });
    config = Object.freeze({ ...config, registrations: Object.freeze([...config.registrations, registration]) });
    if (config.backend.registrations.length === 0) {
      // Backend services against the sandbox out of the box: a registration named `sandbox` (a key made in memory).
      const { sandboxBackendRegistration } = await import('./sandbox/backend-registration.js');
      const backend = await sandboxBackendRegistration(sb);
      config = Object.freeze({ ...config, backend: Object.freeze({ ...config.backend, registrations: Object.freeze([backend]) }) });
    }
  }

  let redis: RedisClient | undefined;
  let stores: Pick<AppDeps, 'sessionStore' | 'tokenStore' | 'transactionStore'> = {};
  if (config.redisUrl) {
    redis = await connectRedis(config.redisUrl, logger);
    stores = { sessionStore: createRedisSessionStore(redis, config.sessionIdleSeconds), tokenStore: new RedisTokenStore(redis), transactionStore: new RedisTransactionStore(redis) };
    logger.info({ event: 'session.store', store: 'redis' }, 'sessions and tokens: Redis (shared by every instance)');
  } else if (config.isProduction) {
    logger.error({ event: 'session.store', store: 'memory' }, 'SESSIONS ARE IN MEMORY: this is for a single instance only. With several instances (Heroku dynos, App Engine instances) launches fail at random, and every restart logs everyone out. Set REDIS_URL.');
  } else {
    logger.warn({ event: 'session.store', store: 'memory' }, 'sessions and tokens: in-memory store, for a single instance only (set REDIS_URL for several instances or to survive restarts)');
  }

  const app = createApp({ config, logger, ...stores, ...(redis ? { redis } : {}), ...(sandbox ? { sandbox } : {}) });
  const server = http.createServer(app);
  server.listen(config.port, config.host, () => {
    const port = (server.address() as import('node:net').AddressInfo).port;
    logger.info({ event: 'server.listening', port, publicUrl: config.publicUrl, registrations: config.registrations.map((r) => r.name) }, `listening on port ${port}`);
    void app.locals.exportJobs?.resumeUnfinished().catch((err: Error) => logger.error({ event: 'bulk.resume_failed', reason: err.message }, 'bulk export jobs: resume failed'));
    if (sandbox) {
      logger.info({ event: 'sandbox.ready' }, `Sandbox EHR ready: open ${config.publicUrl}/sandbox/ and press "Launch app" next to a patient`);
    }
  });
  installShutdown(server, logger, async () => {
    await app.locals.exportJobs?.stopAll();
    await sandbox?.close();
    await redis?.quit();
  });
}

function installShutdown(server: http.Server, logger: Logger, closeOthers: () => Promise<void>): void {
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ event: 'server.stopping', signal }, 'stopping: no new connections; finishing requests in flight');
    const force = setTimeout(() => {
      logger.warn({ event: 'server.stop_forced' }, 'stopping: grace period over; closing remaining connections');
      server.closeAllConnections();
    }, SHUTDOWN_GRACE_MS);
    force.unref();
    server.close(async () => {
      await closeOthers().catch(() => undefined);
      logger.info({ event: 'server.stopped' }, 'stopped');
      logger.flush?.();
      process.exit(0);
    });
    server.closeIdleConnections();
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

main().catch((err) => {
  process.stderr.write(`smart-bff: failed to start: ${(err as Error).message}\n`);
  process.exit(1);
});
