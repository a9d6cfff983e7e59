/**
 * createApp(deps): the middleware, the one route table, 404 and the error handler. No listen() here, so tests
 * drive the app over a real socket they open themselves.
 */
import { fileURLToPath } from 'node:url';
import express, { type Express, type RequestHandler } from 'express';
import helmet from 'helmet';
import type { Store } from 'express-session';
import type { Config } from './config.js';
import type { Logger } from './log.js';
import { requestContext } from './http/request-context.js';
import { requireCsrfHeader } from './http/csrf.js';
import { errorHandler, notFound } from './http/error-handler.js';
import { createMemorySessionStore, createSessionMiddleware, requireSessionStore } from './session/session-middleware.js';
import { MemoryTokenStore, type TokenStore } from './session/token-store.js';
import { DiscoveryCache } from './smart/discovery.js';
import { Registry } from './smart/registry.js';
import { CallbackDeduper, RecentCodes } from './smart/replay-guards.js';
import type { SmartDeps } from './smart/deps.js';
import { ehrLaunchHandler, standaloneLoginHandler } from './smart/launch.js';
import { callbackHandler } from './smart/callback.js';
import { sessionInfoHandler } from './smart/session-info.js';
import { logoutHandler } from './smart/logout.js';
import { TokenRefresher } from './smart/token-refresher.js';
import { createProxyAgents, fhirProxyHandler } from './proxy/fhir-proxy.js';

export interface AppDeps {
  config: Config;
  logger: Logger;
  /** The built-in development EHR, mounted at /sandbox (development only). */
  sandbox?: { handler: RequestHandler; homeUrl?: string };
  sessionStore?: Store;
  tokenStore?: TokenStore;
  /** Injected to share discovery between app instances in tests; normally created here. */
  discovery?: DiscoveryCache;
}

export interface App extends Express {
  locals: Express['locals'] & { smart: SmartDeps; refresher: TokenRefresher };
}

const VIEWS_DIR = fileURLToPath(new URL('../views', import.meta.url));
const PUBLIC_DIR = fileURLToPath(new URL('../public', import.meta.url));

export function createApp(deps: AppDeps): App {
  const { config, logger } = deps;
  if (config.isProduction && deps.sandbox) throw new Error('the sandbox EHR is never mounted in production');
  const smart: SmartDeps = {
    config,
    logger,
    registry: new Registry(config.registrations),
    discovery: deps.discovery ?? new DiscoveryCache({ ttlSeconds: config.discoveryTtlSeconds, timeoutMs: config.httpTimeoutMs, allowInsecureHttp: config.allowInsecureHttp }),
    tokenStore: deps.tokenStore ?? new MemoryTokenStore(),
    recentCodes: new RecentCodes(),
    callbacks: new CallbackDeduper(),
  };
  const sessionStore = deps.sessionStore ?? createMemorySessionStore();

  const app = express() as App;
  const refresher = new TokenRefresher(smart);
  app.locals.smart = smart;
  app.locals.refresher = refresher;
  app.disable('x-powered-by');
  app.set('trust proxy', config.trustProxy);
  app.set('query parser', 'simple');
  app.set('views', VIEWS_DIR);
  app.set('view engine', 'ejs');

  app.use(requestContext(logger));
  app.get('/healthz', (_req, res) => void res.json({ status: 'ok' }));
  app.get('/favicon.ico', (_req, res) => void res.status(204).set('cache-control', 'public, max-age=86400').end());
  if (deps.sandbox) app.use('/sandbox', deps.sandbox.handler);

  app.use(
    helmet({
      contentSecurityPolicy: { directives: { 'default-src': ["'self'"], 'script-src': ["'self'"], 'style-src': ["'self'"], 'img-src': ["'self'", 'data:'], 'form-action': ["'self'"], 'frame-ancestors': ["'self'"] } },
      referrerPolicy: { policy: 'no-referrer' },
    }),
  );
  app.use('/static', express.static(PUBLIC_DIR, { index: false, maxAge: '1h' }));
  app.use(createSessionMiddleware(config, sessionStore));
  app.use(requireSessionStore);

  // The route table.
  app.get('/', (_req, res) => res.render('index', {
    launchUri: `${config.publicUrl}/launch`, redirectUri: config.redirectUri,
    sandboxUrl: deps.sandbox ? `${config.publicUrl}/sandbox/` : null, registrations: config.registrations,
  }));
  app.get('/launch', ehrLaunchHandler(smart));
  app.get('/login', standaloneLoginHandler(smart));
  app.get('/callback', callbackHandler(smart));
  app.get('/app', (_req, res) => { res.setHeader('Cache-Control', 'no-store'); res.render('app'); });
  app.use('/api', requireCsrfHeader);
  app.get('/api/session', sessionInfoHandler(smart));
  app.post('/logout', requireCsrfHeader, logoutHandler(smart));
  app.use('/fhir', requireCsrfHeader, fhirProxyHandler(smart, refresher, createProxyAgents()));

  app.use(notFound);
  app.use(errorHandler());
  return app;
}
