/**
 * The operator console, `/admin` (only with ADMIN_TOKEN; without it nothing is mounted and /admin is a 404):
 *
 *   GET  /admin/sign-in                 the sign-in page (operator-auth.ts)
 *   POST /admin/api/sign-in, sign-out   X-CSRF: 1 and same-origin; sign-in rate-limited
 *   GET  /admin/launches[?failed=1]     the launch trace (launch-pages.ts), GET /admin/launches/<id>, GET /admin/api/launches
 *   GET  /admin/exports                 exports (exports-console.ts): /admin/api/exports (GET, POST), DELETE /admin/api/exports/<id>,
 *                                       GET /admin/exports/<id>/files/<name>
 *
 * Its pages are never framed (CSP frame-ancestors 'none', whatever the app's own framing settings), and carry the
 * app's strict CSP: no inline script or style; the console's script is /static/admin.js.
 */
import express, { type RequestHandler, type Router } from 'express';
import type { Config } from '../config.js';
import type { Logger } from '../log.js';
import type { ExportJobs } from '../backend-services/export-jobs.js';
import type { RedisClient } from '../session/redis-client.js';
import { LaunchTrace } from '../launch-trace/collector.js';
import { MemoryTraceStore, RedisTraceStore } from '../launch-trace/trace-store.js';
import { operatorAuth } from './operator-auth.js';
import { MemoryOperatorSessions, RedisOperatorSessions } from './operator-sessions.js';
import { addLaunchPages } from './launch-pages.js';
import { addExportsConsole } from './exports-console.js';

export interface AdminConsole {
  /** Mounted at /admin. */
  router: Router;
  /** Mounted on the launch routes: their log records go to the trace. */
  traceLaunchRoutes: RequestHandler;
  trace: LaunchTrace;
}

const neverFramed: RequestHandler = (_req, res, next) => {
  const csp = res.getHeader('content-security-policy');
  if (typeof csp === 'string') res.setHeader('content-security-policy', csp.replace(/frame-ancestors [^;]*/, "frame-ancestors 'none'"));
  res.setHeader('x-frame-options', 'DENY');
  next();
};

export function createAdminConsole(o: { config: Config; logger: Logger; adminToken: string; jobs: ExportJobs; redis?: RedisClient }): AdminConsole {
  const { config } = o;
  const trace = new LaunchTrace({
    logger: o.logger,
    store: o.redis ? new RedisTraceStore(o.redis, config.launchTraceSize) : new MemoryTraceStore(config.launchTraceSize),
  });
  const sessions = o.redis ? new RedisOperatorSessions(o.redis, config.adminSessionIdleSeconds) : new MemoryOperatorSessions(config.adminSessionIdleSeconds);
  const auth = operatorAuth({ config, adminToken: o.adminToken, sessions, ...(o.redis ? { redis: o.redis } : {}) });

  const router = express.Router({ caseSensitive: true, strict: false });
  router.use(neverFramed);
  router.use((_req, res, next) => {
    res.locals.idleMinutes = Math.round(config.adminSessionIdleSeconds / 60 * 10) / 10;
    next();
  });
  router.get('/', (_req, res) => res.redirect(303, '/admin/launches'));
  router.get('/sign-in', auth.signInPage);
  router.post('/api/sign-in', ...auth.signIn);
  router.post('/api/sign-out', auth.antiForgery, auth.signOut);
  addLaunchPages(router, { auth, trace, traceSize: config.launchTraceSize });
  addExportsConsole(router, { auth, jobs: o.jobs });
  return { router, traceLaunchRoutes: trace.tapLaunchRoutes, trace };
}
