/**
 * Process entry: config → (sandbox) → createApp → listen; graceful shutdown on SIGTERM/SIGINT.
 *
 * stdout carries the log and nothing else, one JSON object per line (pino), for log pipelines and
 * `smart-bff explain`. People get one plain line on stderr once the server listens, saying where to open the app
 * (the sandbox in development) or which URIs to register at the EHR (production); configuration errors go to
 * stderr too.
 */
import http from 'node:http';
import { ConfigError, loadConfig, type Config } from './config.js';
import { createLogger, type Logger } from './log.js';
import { createApp, type AppDeps } from './app.js';
import { startIdleHeapWarmer } from './idle-heap-warmer.js';
import type { RedisConnection } from './session/redis-client.js';

const SHUTDOWN_GRACE_MS = 10_000;

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
    // the sandbox's modules, light ones included, load only when it runs (production never imports src/sandbox/)
    const [{ createSandbox }, { SANDBOX_CLIENT_ID, sandboxBaseUrl, sandboxLaunchRegistration }] = await Promise.all([
      import('./sandbox/index.js'), import('./sandbox/launch-registration.js'),
    ]);
    const sb = await createSandbox({
      baseUrl: sandboxBaseUrl(config),
      clients: [{ client_id: SANDBOX_CLIENT_ID, token_endpoint_auth_method: 'none', redirect_uris: [config.redirectUri], launch_uri: `${config.publicUrl}/launch` }],
      keysDir: config.sandboxKeysDir,
      logger: logger.child({ component: 'sandbox' }),
    });
    sandbox = sb;
    const registration = sandboxLaunchRegistration(sb.fhirBaseUrl);
    config = Object.freeze({ ...config, registrations: Object.freeze([...config.registrations, registration]) });
    if (config.backend.registrations.length === 0) {
      // Backend services against the sandbox out of the box: a registration named `sandbox` (a key made in memory).
      const { sandboxBackendRegistration } = await import('./sandbox/backend-registration.js');
      const backend = await sandboxBackendRegistration(sb);
      config = Object.freeze({ ...config, backend: Object.freeze({ ...config.backend, registrations: Object.freeze([backend]) }) });
    }
  }

  // Redis connects in the background: the server waits for the first attempt only (at most one connect
  // timeout), then listens whatever Redis does. While Redis is unreachable /readyz says why and session routes
  // answer 503; the client keeps reconnecting and everything recovers by itself when Redis comes up.
  let redis: RedisConnection | undefined;
  let stores: Pick<AppDeps, 'sessionStore' | 'tokenStore' | 'transactionStore'> = {};
  if (config.redis) {
    // The Redis client (hundreds of modules) is loaded only when Redis is configured.
    const [{ RedisConnection }, { createRedisSessionStore, RedisTokenStore, RedisTransactionStore }] = await Promise.all([
      import('./session/redis-client.js'), import('./session/redis-store.js'),
    ]);
    redis = new RedisConnection(config.redis, logger.child({ component: 'redis' }));
    await redis.start();
    stores = {
      sessionStore: createRedisSessionStore(redis.client, config.sessionIdleSeconds),
      tokenStore: new RedisTokenStore(redis.client),
      transactionStore: new RedisTransactionStore(redis.client),
    };
    logger.info({ event: 'session.store', store: 'redis' }, 'sessions and tokens: Redis (shared by every instance)');
  } else if (config.isProduction && !config.singleInstance) {
    logger.error(
      { event: 'session.store', store: 'memory', singleInstance: false },
      'SESSIONS ARE IN MEMORY, AND NOTHING SAYS THIS IS THE ONLY INSTANCE. Each instance keeps its own sessions: with several ' +
        '(App Engine scales out unless max_instances is 1; several Heroku dynos) launches fail at random with a state error and ' +
        'users are signed out whenever a request reaches another instance; every restart or deploy signs everyone out. Set REDIS_URL ' +
        '(Heroku Redis, Memorystore), or, if exactly one instance runs (app.yaml max_instances: 1, one web dyno), set SINGLE_INSTANCE=1 to say so.',
    );
  } else if (config.isProduction) {
    logger.warn({ event: 'session.store', store: 'memory', singleInstance: true }, 'sessions and tokens: in memory on this single instance (SINGLE_INSTANCE=1); a restart or deploy signs everyone out. Never run a second instance without REDIS_URL.');
  } else {
    logger.warn({ event: 'session.store', store: 'memory' }, 'sessions and tokens: in-memory store, for a single instance only (set REDIS_URL for several instances or to survive restarts)');
  }
  if (config.backend.adminToken) {
    const { bulkDataDir: dir, bulkDataDirSource: source } = config.backend;
    logger.info({ event: 'bulk.dir', dir, source }, source === 'tmp'
      ? `bulk-data: export jobs and files in ${dir} (the working directory is read-only); this disk is ephemeral, fetch the files soon`
      : `bulk-data: export jobs and files in ${dir}`);
  }

  const app = createApp({ config, logger, ...stores, ...(redis ? { redis } : {}), ...(sandbox ? { sandbox } : {}) });
  // the young generation keeps its size through quiet spells (see idle-heap-warmer.ts); HEAP_KEEP_WARM=off stops it
  const heapWarmer = config.heapKeepWarm ? startIdleHeapWarmer() : undefined;
  const server = http.createServer(app);
  server.listen(config.port, config.host, () => {
    const port = (server.address() as import('node:net').AddressInfo).port;
    logger.info({ event: 'server.listening', port, publicUrl: config.publicUrl, registrations: config.registrations.map((r) => r.name) }, `listening on port ${port}`);
    void app.locals.exportJobs?.watch().catch((err: Error) => logger.error({ event: 'bulk.resume_failed', reason: err.message }, 'bulk export jobs: resume failed'));
    if (sandbox) {
      logger.info({ event: 'sandbox.ready' }, `Sandbox EHR ready: open ${config.publicUrl}/sandbox/ and press "Launch app" next to a patient`);
    }
    process.stderr.write(`${readyLine(config, port, Boolean(sandbox))}\n`);
  });
  installShutdown(server, logger, async () => {
    heapWarmer?.stop();
    app.locals.sessionEndings.close();
    // revocations of ended launch contexts still in flight get a few seconds to finish
    await app.locals.smart.endings.settled(5000);
    await app.locals.exportJobs?.stopAll();
    await app.locals.proxyClient.close();
    await sandbox?.close();
    await redis?.close();
  });
}

/** The one line for people: where to open the app, or what to register at the EHR. */
function readyLine(config: Config, port: number, sandbox: boolean): string {
  const uris = `launch URI ${config.publicUrl}/launch, redirect URI ${config.redirectUri}`;
  if (sandbox) return `smart-bff is running (port ${port}): open ${config.publicUrl}/sandbox/ and press "Launch app" next to a patient.`;
  if (config.isProduction) return `smart-bff is running (port ${port}) at ${config.publicUrl}. Register at the EHR: ${uris}.`;
  return `smart-bff is running: open ${config.publicUrl}/ (register at the EHR: ${uris}).`;
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
