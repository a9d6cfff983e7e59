/**
 * createApp(deps): the middleware, the one route table, 404 and the error handler. No listen() here, so tests
 * drive the app over a real socket they open themselves.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { fileURLToPath } from 'node:url';
import express, { type Express, type RequestHandler } from 'express';
import helmet from 'helmet';
import type { Store } from 'express-session';
import type { Config } from './config.js';
import { sha256Short, type Logger } from './log.js';
import { accessLog } from './http/access-log.js';
import { requireCsrfHeader } from './http/csrf.js';
import { errorHandler, isFhirUrl, jsonAnswers, notFound } from './http/error-handler.js';
import { AppError, ErrorCode } from './http/errors.js';
import { launchRateLimit } from './http/rate-limit.js';
import { originForm, requireOriginForm } from './http/request-target.js';
import { trustProxyCheck } from './http/trust-proxy-check.js';
import { Metrics, metricsHandler } from './observability/metrics.js';
import type { RedisConnection } from './session/redis-client.js';
import { createMemorySessionStore, MEMORY_SESSIONS_MAX, createSessionMiddleware, requireSessionStore, sessionCookieName, touchIntervalMs } from './session/session-middleware.js';
import { announceSessionWrites, busFor, CachingTokenStore, READ_CACHE_TTL_MS, REDIS_CLIENT } from './session/cached-stores.js';
import { ProxySessions, type StoredSession } from './session/proxy-sessions.js';
import { ReadCache } from './session/read-cache.js';
import { SessionCookieReader } from './session/session-cookie.js';
import { MemoryTokenStore, type TokenSet, type TokenStore } from './session/token-store.js';
import { SessionEndings } from './session/session-endings.js';
import { ContextEndings } from './smart/context-endings.js';
import { MemoryTransactionStore, type TransactionStore } from './session/transaction-store.js';
import { DiscoveryCache } from './smart/discovery.js';
import { IdTokenVerifier } from './smart/id-token.js';
import { Registry } from './smart/registry.js';
import { CallbackDeduper, RecentCodes } from './routes/replay-guards.js';
import type { SmartDeps } from './smart/deps.js';
import { ehrLaunchHandler, launchContinueHandler, standaloneLoginHandler } from './routes/launch.js';
import { callbackHandler } from './routes/callback.js';
import { sessionInfoHandler } from './routes/session-info.js';
import { logoutHandler } from './routes/logout.js';
import { TokenRefresher } from './smart/token-refresher.js';
import { fhirProxyHandler } from './proxy/fhir-proxy.js';
import { UpstreamClient } from './proxy/upstream-client.js';
import { fhirRoute } from './proxy/fhir-route.js';
import { buildJwks, jwksHandler } from './backend-services/jwks.js';
import { BackendTokenClient } from './backend-services/token-client.js';
import { ExportJobs } from './backend-services/export-jobs.js';
import { RedisJobLeases } from './backend-services/job-lease.js';
import { createBulkDataRouter } from './backend-services/http-api.js';
import { createAdminConsole, type AdminConsole } from './admin/console.js';

export interface AppDeps {
  config: Config;
  logger: Logger;
  /** The built-in development EHR, mounted at /sandbox (development only). */
  sandbox?: { handler: RequestHandler };
  sessionStore?: Store;
  tokenStore?: TokenStore;
  /** Pending launches (RedisTransactionStore with Redis); normally an in-memory LRU of MAX_PENDING_LAUNCHES. */
  transactionStore?: TransactionStore;
  /** Redis, when configured: readiness (/readyz says why it is unreachable) and shared rate limits. */
  redis?: RedisConnection;
  /** Injected to share discovery between app instances in tests; normally created here. */
  discovery?: DiscoveryCache;
  /** Tests: how often this instance sweeps for sessions that ended idle, or never (false). Normally derived from SESSION_IDLE_MINUTES. */
  sessionSweepIntervalMs?: number | false;
  /** Extra routers mounted before the 404 (e.g. backend services). */
  extraRoutes?: (app: Express) => void;
}

export interface App extends Express {
  locals: Express['locals'] & { smart: SmartDeps; sessionEndings: SessionEndings; refresher: TokenRefresher; proxyClient: UpstreamClient; exportJobs?: ExportJobs; admin?: AdminConsole };
}

/** The routes of a launch (served below): their log records feed the launch trace. */
const LAUNCH_ROUTES = ['/launch', '/launch/continue', '/login', '/callback'];

const VIEWS_DIR = fileURLToPath(new URL('../views', import.meta.url));
const PUBLIC_DIR = fileURLToPath(new URL('../public', import.meta.url));

/** A token store shared through Redis, with the proxy's read cache in front (cached-stores.ts); any other as it is. */
function withReadCache(store: TokenStore, logger: Logger): TokenStore {
  if (store instanceof CachingTokenStore || !(store as { [REDIS_CLIENT]?: unknown })[REDIS_CLIENT]) return store;
  return new CachingTokenStore(store, busFor(store, logger));
}

export function createApp(deps: AppDeps): App {
  const { config, logger } = deps;
  if (config.isProduction && deps.sandbox) throw new Error('the sandbox EHR is never mounted in production');
  const metrics = new Metrics({ processMetrics: config.metricsToken !== undefined }); // read only through /metrics
  let tokensPushedOut: ((contextId: string, tokens: TokenSet) => void) | undefined;
  const base: Omit<SmartDeps, 'endings'> = {
    config,
    logger,
    registry: new Registry(config.registrations),
    discovery: deps.discovery ?? new DiscoveryCache({
      ttlSeconds: config.discoveryTtlSeconds, timeoutMs: config.httpTimeoutMs, allowInsecureHttp: config.allowInsecureHttp,
      maxEntries: config.discoveryCacheMax, newIssuersPerMinute: config.discoveryNewPerMinute,
    }),
    // a token store shared through Redis gets a read cache for the proxy's calls (cached-stores.ts)
    // a token set pushed out of a full memory store is revoked, not forgotten (set once `smart` exists, below)
    tokenStore: deps.tokenStore ? withReadCache(deps.tokenStore, logger) : new MemoryTokenStore({
      max: MEMORY_SESSIONS_MAX * config.maxContextsPerSession,
      onEvict: (contextId, tokens) => tokensPushedOut?.(contextId, tokens),
    }),
    transactions: deps.transactionStore ?? new MemoryTransactionStore({ max: config.maxPendingLaunches }),
    idTokens: new IdTokenVerifier({ timeoutMs: config.httpTimeoutMs, maxEntries: config.discoveryCacheMax }),
    recentCodes: new RecentCodes(),
    callbacks: new CallbackDeduper(),
    metrics,
  };
  const smart: SmartDeps = { ...base, endings: new ContextEndings(base) };
  tokensPushedOut = (contextId, tokens) => {
    logger.warn({ event: 'tokens.memory_full', contextId, max: MEMORY_SESSIONS_MAX * config.maxContextsPerSession }, 'the in-memory token store is full: the least recently used token set was pushed out and its tokens are being revoked (use Redis for more sessions)');
    void smart.endings.revokeTaken(contextId, tokens, { reason: 'memory_full' });
  };
  const sessionStore = deps.sessionStore ?? createMemorySessionStore(config.sessionIdleSeconds);
  // However a session ends (even silently, in the store), its launch contexts end and their tokens are revoked.
  const sessionEndings = new SessionEndings({
    config, tokenStore: smart.tokenStore, logger,
    endContexts: (ids, ending, log) => void smart.endings.end(ids, ending, log),
    ...(deps.sessionSweepIntervalMs !== undefined ? { sweepIntervalMs: deps.sessionSweepIntervalMs } : {}),
  }, sessionStore);
  const refresher = new TokenRefresher(smart);

  const app = express() as App;
  app.locals.smart = smart;
  app.locals.sessionEndings = sessionEndings;
  app.locals.refresher = refresher;
  app.locals.proxyClient = new UpstreamClient(); // keep-alive pools to the EHRs' FHIR servers, made on first use
  app.disable('x-powered-by');
  // Routes match case and encoding exactly, so the anti-forgery and JSON checks mounted on the same paths cover
  // exactly what the routes serve (/API/SESSION is not /api/session).
  app.set('case sensitive routing', true);
  app.set('trust proxy', config.trustProxy);
  app.set('query parser', 'simple');
  app.set('views', VIEWS_DIR);
  app.set('view engine', 'ejs');

  const sessionMiddleware = [...createSessionMiddleware(config, sessionStore, sessionEndings), requireSessionStore()];
  const apiHeaders: RequestHandler = (_req, res, next) => {
    // JSON and FHIR responses need none of the HTML-oriented headers, and carry session state: never cached.
    res.setHeader('X-Content-Type-Options', 'nosniff');
    res.setHeader('Cross-Origin-Resource-Policy', 'same-origin');
    res.setHeader('Cache-Control', 'no-store');
    next();
  };
  // The FHIR proxy is the hot path: it runs ahead of Express (fhir-route.ts) with a short chain of its own: no
  // page headers, no static files, no access-log line (the proxy writes one richer line per call), and the
  // anti-forgery header checked before the session is loaded. Every other URL goes through Express below.
  // Its session path reads the same store through the same wrappers as express-session (proxy-sessions.ts), with a
  // read cache that every session write invalidates, on every instance.
  const sessionBus = busFor(sessionStore, logger);
  announceSessionWrites(sessionStore, sessionBus);
  // A cached session lives less than the touch interval: a store entry alive when read, and touched then (or within
  // the interval before), outlives it, so the cache never serves a session the idle timeout has ended.
  const sessionCache = new ReadCache<StoredSession>({ max: 10_000, ttlMs: Math.min(READ_CACHE_TTL_MS, touchIntervalMs(config.sessionIdleSeconds)) });
  sessionBus.register('session', sessionCache);
  const proxySessions = new ProxySessions({
    store: sessionStore, cookies: new SessionCookieReader(sessionCookieName(config), config.sessionSecret), cache: sessionCache,
    absoluteSeconds: config.sessionAbsoluteSeconds,
    // its contexts end here (tokens revoked in the background), as express-session's path does (session-middleware.ts)
    onAbsoluteTimeout: (ids, sid, log) => sessionEndings.endContexts(ids, { reason: 'absolute_timeout', noticed: 'request', sessionSha: sha256Short(sid) }, log),
  });
  const fhir = fhirRoute({ logger, metrics, sessions: proxySessions, proxy: fhirProxyHandler(smart, refresher, app.locals.proxyClient, proxySessions) });
  // express() returns `function app(req, res, next) { app.handle(req, res, next) }`: the one place to branch.
  type Handle = (req: IncomingMessage, res: ServerResponse, next?: (err?: unknown) => void) => void;
  const withHandle = app as unknown as { handle: Handle };
  const expressHandle = withHandle.handle.bind(app);
  const checkTrustProxy = trustProxyCheck(config, logger);
  withHandle.handle = (req, res, next) => {
    checkTrustProxy(req);
    req.url = originForm(req.url ?? '');
    return isFhirUrl(req.url) ? fhir(req, res) : expressHandle(req, res, next);
  };

  // A request target that is not a path (`GET *`) is a bad request, before anything that reads the path.
  app.use(requireOriginForm);
  app.use(accessLog(logger));
  // Programmatic endpoints answer JSON whatever the Accept header says, on exactly the paths the router serves.
  app.use('/api', jsonAnswers);
  app.use('/admin/api', jsonAnswers);
  app.post('/logout', jsonAnswers);
  app.get('/healthz', (_req, res) => void res.set('cache-control', 'no-store').json({ status: 'ok' }));
  app.get('/readyz', async (_req, res) => {
    const checks: Record<string, string> = { config: 'ok' };
    if (deps.redis) checks.redis = await deps.redis.check();
    const ready = Object.values(checks).every((v) => v === 'ok');
    res.status(ready ? 200 : 503).set('cache-control', 'no-store').json({ status: ready ? 'ready' : 'not_ready', checks });
  });
  if (config.metricsToken) app.get('/metrics', metricsHandler(metrics, config.metricsToken));
  // Public keys for private_key_jwt (user-facing asymmetric clients and backend services), with rotation.
  const publicKeys = [
    ...config.registrations.flatMap((r) => (r.key ? [r.key.publicJwk] : [])),
    ...config.backend.registrations.map((r) => r.key.publicJwk),
    ...config.backend.extraPublicKeys,
  ];
  if (publicKeys.length) app.get('/.well-known/jwks.json', jwksHandler(buildJwks(publicKeys)));
  if (config.backend.adminToken) {
    const backendDiscovery = new DiscoveryCache({ purpose: 'backend', ttlSeconds: config.discoveryTtlSeconds, timeoutMs: config.httpTimeoutMs, allowInsecureHttp: config.allowInsecureHttp, maxEntries: config.discoveryCacheMax });
    const tokens = new BackendTokenClient({ discovery: backendDiscovery, logger, timeoutMs: config.httpTimeoutMs, allowInsecureHttp: config.allowInsecureHttp });
    const jobs = new ExportJobs({
      dir: config.backend.bulkDataDir, registrations: config.backend.registrations, tokens, logger: logger.child({ component: 'bulk-data' }),
      // several instances: one drives each job, under a lease in Redis
      ...(deps.redis ? { leases: new RedisJobLeases(deps.redis.client, config.backend.jobLeaseSeconds * 1000) } : {}),
    });
    app.locals.exportJobs = jobs;
    // The operator console (/admin: the launch trace, exports), mounted with the pages below.
    app.locals.admin = createAdminConsole({ config, logger, adminToken: config.backend.adminToken, jobs, ...(deps.redis ? { redis: deps.redis.client } : {}) });
    app.use('/api/bulk-data', (_req, res, next) => { res.setHeader('Cache-Control', 'no-store'); next(); }, createBulkDataRouter({ adminToken: config.backend.adminToken, jobs }));
  } else {
    app.use('/api/bulk-data', (_req, _res, next) => next(new AppError(ErrorCode.NOT_FOUND, 404, 'The bulk-data API is off: set ADMIN_TOKEN to enable it.')));
  }
  app.get('/favicon.ico', (_req, res) => void res.status(204).set('cache-control', 'public, max-age=86400').end());
  if (deps.sandbox) app.use('/sandbox', deps.sandbox.handler);

  const securityHeaders = (frameAncestors: readonly string[], allowFraming: boolean) => helmet({
    contentSecurityPolicy: {
      directives: {
        'default-src': ["'self'"], 'script-src': ["'self'"], 'style-src': ["'self'"], 'img-src': ["'self'", 'data:'],
        'connect-src': ["'self'"], 'form-action': ["'self'"], 'frame-ancestors': [...frameAncestors], 'object-src': ["'none'"], 'base-uri': ["'none'"],
      },
    },
    // Embedding is governed by CSP frame-ancestors; X-Frame-Options would forbid the embedded mode outright.
    xFrameOptions: allowFraming ? false : { action: 'sameorigin' },
    referrerPolicy: { policy: 'no-referrer' },
    strictTransportSecurity: config.publicUrl.startsWith('https:') ? { maxAge: 31536000 } : false,
  });
  const embeddable = config.cookieMode === 'embedded' || config.frameAncestors.some((f) => f !== "'self'");
  const pageHeaders = securityHeaders(config.frameAncestors, embeddable);
  app.use((req, res, next) => (res.locals.jsonAnswers === true ? apiHeaders(req, res, next) : pageHeaders(req, res, next)));
  // The launch steps may always run inside an EHR's frame: they only redirect, or explain (in the default mode)
  // that the app cannot run there and offer a top-level window, rather than showing a blank refused frame.
  const launchFrameable = securityHeaders(embeddable ? config.frameAncestors : ['*'], true);
  app.use('/static', express.static(PUBLIC_DIR, { index: false, maxAge: '1h' }));
  // Everything below carries session state: never cached.
  app.use((_req, res, next) => {
    res.setHeader('Cache-Control', 'no-store');
    next();
  });
  const admin = app.locals.admin;
  if (admin) {
    app.use('/admin', admin.router);
    // The launch routes' log records also go to the launch trace: exactly these routes (matched as the router
    // matches them below), never a 404 under their prefixes.
    app.get(LAUNCH_ROUTES, admin.traceLaunchRoutes);
  }
  // The route table. Starting a launch needs no session (pending launches live apart, bound to the browser by
  // the launch cookie), so these run before the session is loaded and never create one. Every launch route counts
  // against the one per-address LAUNCH_RATE_LIMIT.
  const limitLaunches = launchRateLimit(config.launchRateLimitPerMinute, deps.redis?.client);
  app.get('/launch', launchFrameable, limitLaunches, ehrLaunchHandler(smart));
  app.get('/launch/continue', launchFrameable, limitLaunches, launchContinueHandler(smart));
  app.get('/login', limitLaunches, standaloneLoginHandler(smart));
  // The anti-forgery header, checked before any session is loaded.
  app.use('/api', requireCsrfHeader);
  app.post('/logout', requireCsrfHeader);
  app.use(sessionMiddleware);
  app.get('/', (_req, res) => res.render('index', {
    launchUri: `${config.publicUrl}/launch`, redirectUri: config.redirectUri,
    sandboxUrl: deps.sandbox ? `${config.publicUrl}/sandbox/` : null, registrations: config.registrations,
  }));
  app.get('/callback', limitLaunches, callbackHandler(smart));
  app.get('/app', (_req, res) => res.render('app'));
  app.get('/api/session', sessionInfoHandler(smart));
  app.post('/logout', logoutHandler(smart));
  deps.extraRoutes?.(app);

  app.use(notFound);
  app.use(errorHandler(metrics));
  return app;
}
