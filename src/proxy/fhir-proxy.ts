/**
 * `/fhir/*` → the FHIR base bound to the launch, with the launch's access token. Node's own streaming HTTP
 * client (node:http/https): both directions stream in bounded memory, a browser abort destroys the upstream
 * request, redirects are never followed, and the token only goes to the launch's FHIR base (target-url.ts).
 * Named steps: checkMethod → selectContext → tokensFor → buildTargetUrl → forward (→ refresh once on 401).
 */
import http from 'node:http';
import https from 'node:https';
import type { Request, Response } from 'express';
import { AppError, ErrorCode } from '../http/errors.js';
import type { Logger } from '../log.js';
import { saveSession } from '../session/session-ops.js';
import type { TokenSet } from '../session/token-store.js';
import type { LaunchContextInfo } from '../session/types.js';
import { selectContext } from '../smart/contexts.js';
import type { SmartDeps } from '../smart/deps.js';
import type { TokenRefresher } from '../smart/token-refresher.js';
import { browserResponseHeaders, upstreamRequestHeaders } from './headers.js';
import { LinkRewriter, isRewritable, needlesFor, rewriteBody, rewriteUrlValue } from './link-rewriter.js';
import { buildTargetUrl } from './target-url.js';

const ALLOWED_METHODS = new Set(['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD']);
const SAFE_METHODS = new Set(['GET', 'HEAD']);
/** Bodies up to this size (with a Content-Length) are rewritten in one piece. */
const WHOLE_BODY_LIMIT = 1024 * 1024;

export interface ProxyAgents {
  http: http.Agent;
  https: https.Agent;
}

export function createProxyAgents(): ProxyAgents {
  return {
    http: new http.Agent({ keepAlive: true, maxSockets: 256, maxFreeSockets: 64 }),
    https: new https.Agent({ keepAlive: true, maxSockets: 256, maxFreeSockets: 64 }),
  };
}

class UpstreamFailure extends Error {
  constructor(readonly kind: 'timeout' | 'connect' | 'too_large', readonly detail: string) {
    super(detail);
  }
}

export function fhirProxyHandler(deps: SmartDeps, refresher: TokenRefresher, agents: ProxyAgents) {
  const proxyBase = `${deps.config.publicUrl}/fhir`;

  return async function fhirProxy(req: Request, res: Response): Promise<void> {
    if (!ALLOWED_METHODS.has(req.method)) {
      res.setHeader('Allow', [...ALLOWED_METHODS].join(', '));
      throw new AppError(ErrorCode.METHOD_NOT_ALLOWED, 405, `Method ${req.method} is not allowed through the FHIR proxy.`);
    }
    const ctx = selectContext(req);
    const log = () => req.log; // built on first use: a fresh-token call that logs nothing never builds it
    // req.url is relative to the /fhir mount point and still undecoded.
    let tokens = await tokensOrEndContext(req, ctx, log, refresher);
    const target = buildTargetUrl(req.url, tokens.fhirBaseUrl);

    const declared = Number(req.headers['content-length'] ?? '0');
    if (declared > deps.config.proxyMaxBodyBytes) {
      throw new AppError(ErrorCode.PAYLOAD_TOO_LARGE, 413, `The request body is larger than ${deps.config.proxyMaxBodyBytes} bytes.`);
    }

    const started = Date.now();
    const canRetry = SAFE_METHODS.has(req.method);
    let upstream: http.IncomingMessage;
    try {
      upstream = await send(req, res, target, tokens, deps, agents);
      if (upstream.statusCode === 401 && canRetry) {
        upstream.resume();
        log().info({ event: 'proxy.upstream_401', contextId: ctx.id, path: target.pathname }, 'proxy: upstream answered 401; refreshing once and retrying');
        tokens = await tokensOrEndContext(req, ctx, log, refresher, tokens.accessToken);
        upstream = await send(req, res, target, tokens, deps, agents);
      } else if (upstream.statusCode === 401) {
        // Not safe to replay: refresh for the next call and pass the 401 through.
        void refresher.tokensFor(ctx, log, tokens.accessToken).catch(() => undefined);
      }
    } catch (err) {
      if (err instanceof UpstreamFailure) {
        if (err.kind !== 'too_large') deps.metrics.upstreamErrors.inc({ kind: err.kind });
        deps.metrics.proxyRequests.inc({ method: req.method, status: err.kind === 'timeout' ? '504' : err.kind === 'too_large' ? '413' : '502' });
        throw upstreamError(err, deps.config.proxyTimeoutMs);
      }
      throw err;
    }

    const status = upstream.statusCode ?? 502;
    const contentType = upstream.headers['content-type'];
    const encoded = upstream.headers['content-encoding'] && upstream.headers['content-encoding'] !== 'identity';
    const rewrite = deps.config.proxyRewriteLinks && isRewritable(contentType) && !encoded && req.method !== 'HEAD';
    const declaredLength = Number(upstream.headers['content-length'] ?? NaN);
    // A small body of known length is rewritten whole and sent with its new Content-Length (no chunked framing);
    // anything else streams through the rewriter in constant memory.
    const rewriteWhole = rewrite && declaredLength >= 0 && declaredLength <= WHOLE_BODY_LIMIT;
    const headers = browserResponseHeaders(upstream.headers, { dropContentLength: rewrite });
    for (const h of ['location', 'content-location'] as const) {
      const v = headers[h];
      if (typeof v === 'string') headers[h] = rewriteUrlValue(v, tokens.fhirBaseUrl, proxyBase);
    }
    headers['x-request-id'] = req.id;
    upstream.on('error', () => res.destroy());
    if (rewriteWhole) {
      const chunks: Buffer[] = [];
      upstream.on('data', (chunk: Buffer) => chunks.push(chunk));
      upstream.on('end', () => {
        if (res.destroyed) return;
        const out = rewriteBody(Buffer.concat(chunks), needlesFor(tokens.fhirBaseUrl, proxyBase));
        headers['content-length'] = out.length;
        res.writeHead(status, headers);
        res.end(out);
      });
    } else {
      res.writeHead(status, headers);
      const body = rewrite ? upstream.pipe(new LinkRewriter(needlesFor(tokens.fhirBaseUrl, proxyBase))) : upstream;
      body.pipe(res);
    }
    res.on('close', () => {
      if (!res.writableFinished) upstream.destroy();
      deps.metrics.proxyRequests.inc({ method: req.method, status: String(status) });
      deps.metrics.proxyLatency.observe({ method: req.method }, (Date.now() - started) / 1000);
      if (deps.logger.isLevelEnabled('info')) log().info({ event: 'proxy.request', contextId: ctx.id, method: req.method, path: target.pathname, status, duration_ms: Date.now() - started, aborted: !res.writableFinished }, 'proxy: request forwarded');
    });
  };
}

/** Sends one upstream request; resolves with the response once its headers arrive. */
function send(req: Request, res: Response, target: URL, tokens: TokenSet, deps: SmartDeps, agents: ProxyAgents): Promise<http.IncomingMessage> {
  return new Promise((resolve, reject) => {
    const isHttps = target.protocol === 'https:';
    const upstreamReq = (isHttps ? https : http).request(target, {
      method: req.method,
      headers: upstreamRequestHeaders(req.headers, tokens.accessToken, req.id),
      agent: isHttps ? agents.https : agents.http,
    });
    let settled = false;
    const timer = setTimeout(() => {
      if (settled) return;
      settled = true;
      upstreamReq.destroy();
      reject(new UpstreamFailure('timeout', `no response within ${deps.config.proxyTimeoutMs} ms`));
    }, deps.config.proxyTimeoutMs);
    const onClientClose = () => {
      if (!res.headersSent && !settled) {
        settled = true;
        clearTimeout(timer);
        upstreamReq.destroy();
        reject(new AppError(ErrorCode.BAD_REQUEST, 499, 'The client closed the request.'));
      }
    };
    res.once('close', onClientClose);
    upstreamReq.on('response', (upstream) => {
      clearTimeout(timer);
      res.off('close', onClientClose);
      if (settled) {
        upstream.destroy();
        return;
      }
      settled = true;
      resolve(upstream);
    });
    upstreamReq.on('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      res.off('close', onClientClose);
      if (settled) return;
      settled = true;
      reject(err instanceof UpstreamFailure ? err : new UpstreamFailure('connect', err.code ?? err.message));
    });

    if (SAFE_METHODS.has(req.method) || req.method === 'DELETE') {
      upstreamReq.end();
      return;
    }
    // Stream the request body, counting bytes against the limit.
    let bytes = 0;
    const limit = deps.config.proxyMaxBodyBytes;
    req.on('data', (chunk: Buffer) => {
      bytes += chunk.length;
      if (bytes > limit) {
        req.unpipe(upstreamReq);
        upstreamReq.destroy(new UpstreamFailure('too_large', `request body over ${limit} bytes`));
      }
    });
    req.pipe(upstreamReq);
  });
}

async function tokensOrEndContext(req: Request, ctx: LaunchContextInfo, log: () => Logger, refresher: TokenRefresher, rejectedToken?: string): Promise<TokenSet> {
  try {
    return await refresher.tokensFor(ctx, log, rejectedToken);
  } catch (err) {
    if (err instanceof AppError && err.code === ErrorCode.SESSION_EXPIRED && req.session.contexts?.[ctx.id]) {
      const contexts = { ...req.session.contexts };
      delete contexts[ctx.id];
      req.session.contexts = contexts;
      await saveSession(req).catch(() => undefined);
      log().info({ event: 'context.ended', reason: 'session_expired' }, 'launch context ended');
    }
    throw err;
  }
}

function upstreamError(err: UpstreamFailure, timeoutMs: number): AppError {
  switch (err.kind) {
    case 'timeout':
      return new AppError(ErrorCode.UPSTREAM_TIMEOUT, 504, `The EHR's FHIR server did not answer within ${Math.round(timeoutMs / 1000)} seconds.`, { hint: 'Try again; if it keeps happening, narrow the search.' });
    case 'too_large':
      return new AppError(ErrorCode.PAYLOAD_TOO_LARGE, 413, 'The request body is too large.');
    default:
      return new AppError(ErrorCode.UPSTREAM_UNAVAILABLE, 502, 'The EHR\'s FHIR server could not be reached.', { hint: 'Try again in a moment.' });
  }
}
