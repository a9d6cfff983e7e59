/**
 * `/fhir/*` → the FHIR base bound to the launch, with the launch's access token, through undici's keep-alive pools
 * (upstream-client.ts): both directions stream in bounded memory, a browser abort ends the upstream request,
 * redirects are never followed, and the token only goes to the launch's FHIR base (target-url.ts).
 * Named steps: checkMethod → refuseDeclaredBody → selectContext → tokensFor → buildTargetUrl → readBody → send →
 * respond (→ retryOnce on a 401) → answer (allow-listed headers, Location mapped back or dropped, links rewritten).
 *
 * Framing. The connections to an EHR are a keep-alive pool shared by every user, so each upstream request must be
 * framed by exactly the body the proxy sends, never by what a browser declared; otherwise one browser's request
 * decides how the EHR reads the next user's (request smuggling). So:
 * - the browser's Content-Length, Transfer-Encoding, Expect and TE are never forwarded (headers.ts);
 * - a GET, HEAD or DELETE that declares a body (a non-zero Content-Length, or any Transfer-Encoding) is refused
 *   with 400 `request_body_not_allowed` before any token lookup or upstream call (Content-Length: 0 is no body);
 * - POST, PUT and PATCH bodies go up with exactly the bytes read. Up to 1 MiB (every resource write, transaction
 *   Bundles of ordinary size, $operations) the body is read whole and sent with its exact Content-Length: every
 *   FHIR server and every gateway in front of one accepts that, while some API gateways, WAFs and older servers
 *   refuse chunked request bodies (411 Length Required). Larger bodies (Binary uploads, very large Bundles) stream
 *   in bounded memory with chunked framing, which HTTP/1.1 servers must accept (RFC 9112 §6.1) and the
 *   EHRs' front ends (IIS, load balancers, nginx) do. FHIR_PROXY_MAX_BODY still caps both (413). A body the
 *   browser cuts short is never sent when read whole, and ends the upstream request (and its connection) when
 *   streaming.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Dispatcher } from 'undici';
import { AppError, ErrorCode } from '../http/errors.js';
import type { TokenSet } from '../session/token-store.js';
import type { LaunchContextInfo } from '../session/types.js';
import { selectContext } from '../session/contexts.js';
import type { ProxySessions } from '../session/proxy-sessions.js';
import type { SmartDeps } from '../smart/deps.js';
import type { TokenRefresher } from '../smart/token-refresher.js';
import { browserResponseHeaders, upstreamRequestHeaders } from './headers.js';
import { StreamingRewrite, isRewritable, needlesFor, rewriteBody } from './link-rewriter.js';
import { buildTargetUrl, proxyUrlFor, type TargetUrl } from './target-url.js';
import type { ProxyCall } from './fhir-route.js';
import { dispatch, type UpstreamClient, type UpstreamResponse } from './upstream-client.js';
import { formatMs } from '../launch-trace/story.js';
import { flatInfoLine } from '../log.js';

const ALLOWED_METHODS = new Set(['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD']);
const SAFE_METHODS = new Set(['GET', 'HEAD']);
/** Methods whose requests carry no body through the proxy: one that declares a body is refused. */
const BODILESS_METHODS = new Set(['GET', 'HEAD', 'DELETE']);
/** Response bodies up to this size (with a Content-Length) are rewritten in one piece. */
const WHOLE_BODY_LIMIT = 1024 * 1024;
/** Request bodies up to this size are read whole and sent with an exact Content-Length; larger ones stream chunked. */
const WHOLE_REQUEST_BODY_LIMIT = 1024 * 1024;

/** What goes upstream after the head: nothing, a body read whole, or the start of a body that streams on. */
type RequestBody = { kind: 'none' } | { kind: 'whole'; data: Buffer } | { kind: 'stream'; head: Buffer[]; length: number };
const NO_BODY: RequestBody = { kind: 'none' };

/** A call on its way: what the steps after the upstream request need. */
interface Pending {
  readonly call: ProxyCall;
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  readonly method: string;
  readonly ctx: LaunchContextInfo;
  /** Replaced by the refreshed set when a 401 is retried. */
  tokens: TokenSet;
  readonly target: TargetUrl;
  /** When the upstream request was about to be sent (Date.now()). */
  readonly started: number;
  readonly agent: Dispatcher;
  readonly body: RequestBody;
}

/** The browser went away before its answer (499, nginx's code for it). */
const clientClosed = () => new AppError(ErrorCode.BAD_REQUEST, 499, 'The client closed the request.');

class UpstreamFailure extends Error {
  constructor(readonly kind: 'timeout' | 'connect' | 'too_large', readonly detail: string) {
    super(detail);
  }
}

export function fhirProxyHandler(deps: SmartDeps, refresher: TokenRefresher, client: UpstreamClient, sessions: Pick<ProxySessions, 'withoutContext'>) {
  const proxyBase = `${deps.config.publicUrl}/fhir`;
  // the request's own logger would write the same line (requestId after the base fields); a call that logged nothing
  // else on the way never makes one
  const logCall = flatInfoLine(deps.logger, ['requestId', 'event', 'contextId', 'method', 'path', 'status', 'duration_ms', 'aborted'], 'proxy: request forwarded');

  /**
   * The proxy. Most calls are a GET, HEAD or DELETE whose token set and HTTP client are at hand: they are sent at
   * once and answered from their response, with no async step of their own (an async function and its await cost a
   * few per cent of a read's CPU, docs/benchmarks.md). Every other call takes `prepareThenSend`, which waits for what
   * it needs. Either way the same steps run, in the same order. Throws, or rejects with, the error to answer.
   */
  function fhirProxy(call: ProxyCall, req: IncomingMessage, res: ServerResponse): Promise<void> {
    const method = req.method ?? 'GET';
    if (!ALLOWED_METHODS.has(method)) {
      res.setHeader('Allow', [...ALLOWED_METHODS].join(', '));
      throw new AppError(ErrorCode.METHOD_NOT_ALLOWED, 405, `Method ${method} is not allowed through the FHIR proxy.`);
    }
    refuseDeclaredBody(req, method);
    const ctx = selectContext({ session: call.session?.data, headers: req.headers });
    const tokens = refresher.freshAtHand(ctx);
    const agent = client.made;
    if (tokens === undefined || agent === undefined || !BODILESS_METHODS.has(method)) return prepareThenSend(call, req, res, method, ctx, tokens);
    // a bodiless call declares no body (refuseDeclaredBody): nothing to hold against FHIR_PROXY_MAX_BODY
    const p: Pending = { call, req, res, method, ctx, tokens, target: buildTargetUrl(call.path, tokens.fhirBaseUrl), started: Date.now(), agent, body: NO_BODY };
    return send(p).then((upstream) => respond(p, upstream), (err: unknown) => Promise.reject(failed(err, method)));
  }

  /** A call that waits for something first: its token set (refreshed), its body, or the HTTP client (the first call). */
  async function prepareThenSend(call: ProxyCall, req: IncomingMessage, res: ServerResponse, method: string, ctx: LaunchContextInfo, atHand: TokenSet | undefined): Promise<void> {
    const tokens = atHand ?? await tokensOrEndContext(call, ctx, refresher, sessions);
    const target = buildTargetUrl(call.path, tokens.fhirBaseUrl); // relative to /fhir, still undecoded

    const declared = Number(req.headers['content-length'] ?? '0');
    if (declared > deps.config.proxyMaxBodyBytes) {
      deps.metrics.proxyRequests.inc({ method, status: '413' });
      throw new AppError(ErrorCode.PAYLOAD_TOO_LARGE, 413, `The request body is larger than ${deps.config.proxyMaxBodyBytes} bytes.`);
    }

    const started = Date.now();
    let p: Pending;
    let upstream: UpstreamResponse;
    try {
      const body = BODILESS_METHODS.has(method) ? NO_BODY : await readBody(req, deps.config.proxyMaxBodyBytes);
      const agent = client.made ?? await client.agent();
      p = { call, req, res, method, ctx, tokens, target, started, agent, body };
      upstream = await send(p);
    } catch (err) {
      throw failed(err, method);
    }
    return respond(p, upstream);
  }

  /** The EHR's response: a 401 is retried once for a GET or HEAD, refreshed for the next call otherwise; then the answer. */
  function respond(p: Pending, upstream: UpstreamResponse): void | Promise<void> {
    if (upstream.statusCode !== 401) return answer(p, upstream);
    if (SAFE_METHODS.has(p.method)) return retryOnce(p, upstream);
    // Not safe to replay: refresh for the next call and pass the 401 through.
    void refresher.tokensFor(p.ctx, () => p.call.log(), p.tokens.accessToken).catch(() => undefined);
    return answer(p, upstream);
  }

  async function retryOnce(p: Pending, first: UpstreamResponse): Promise<void> {
    let upstream: UpstreamResponse;
    try {
      first.body.discard();
      p.call.log().info({ event: 'proxy.upstream_401', contextId: p.ctx.id, path: p.target.pathname }, 'proxy: upstream answered 401; refreshing once and retrying');
      p.tokens = await tokensOrEndContext(p.call, p.ctx, refresher, sessions, p.tokens.accessToken);
      upstream = await send(p);
    } catch (err) {
      throw failed(err, p.method);
    }
    answer(p, upstream);
  }

  /** A failure before the response: counted, and an upstream failure made the error to answer (413, 502, 504). */
  function failed(err: unknown, method: string): unknown {
    if (err instanceof AppError && err.status === 413) deps.metrics.proxyRequests.inc({ method, status: '413' });
    if (!(err instanceof UpstreamFailure)) return err;
    if (err.kind !== 'too_large') deps.metrics.upstreamErrors.inc({ kind: err.kind });
    deps.metrics.proxyRequests.inc({ method, status: err.kind === 'timeout' ? '504' : err.kind === 'too_large' ? '413' : '502' });
    return upstreamError(err, deps.config.proxyTimeoutMs);
  }

  /** The answer to the browser: allow-listed headers, Location mapped back or dropped, links rewritten; then its log line. */
  function answer(p: Pending, upstream: UpstreamResponse): void {
    const { call, res, method, ctx, tokens, target, started } = p;
    const status = upstream.statusCode;
    const contentType = upstream.headers['content-type'];
    const encoded = upstream.headers['content-encoding'] && upstream.headers['content-encoding'] !== 'identity';
    const rewrite = deps.config.proxyRewriteLinks && isRewritable(contentType) && !encoded && method !== 'HEAD';
    const declaredLength = Number(upstream.headers['content-length'] ?? NaN);
    // A small body of known length is rewritten whole and sent with its new Content-Length (no chunked framing);
    // anything else streams through the rewriter in constant memory.
    const rewriteWhole = rewrite && declaredLength >= 0 && declaredLength <= WHOLE_BODY_LIMIT;
    const headers = browserResponseHeaders(upstream.headers, { dropContentLength: rewrite });
    for (const h of ['location', 'content-location'] as const) {
      const v = headers[h];
      if (v === undefined) continue;
      const local = typeof v === 'string' ? proxyUrlFor(v, tokens.fhirBaseUrl, proxyBase) : undefined;
      if (local !== undefined) {
        headers[h] = local;
      } else {
        delete headers[h]; // it points outside the FHIR base: the browser is never sent anywhere else
        call.log().info({ event: 'proxy.header_dropped', header: h, contextId: ctx.id, status }, `proxy: dropped a ${h} that points outside the FHIR base`);
      }
    }
    headers['x-request-id'] = call.id;
    const cutShort = () => res.destroy(); // the EHR's answer broke off: so does the browser's
    if (rewriteWhole) {
      upstream.body.collect((raw) => {
        if (res.destroyed) return;
        const out = rewriteBody(raw, needlesFor(tokens.fhirBaseUrl, proxyBase));
        headers['content-length'] = out.length;
        res.writeHead(status, headers);
        res.end(out);
      }, cutShort);
    } else {
      res.writeHead(status, headers);
      upstream.body.pipeTo(res, cutShort, rewrite ? new StreamingRewrite(needlesFor(tokens.fhirBaseUrl, proxyBase)) : undefined);
    }
    res.on('close', () => {
      if (!res.writableFinished) upstream.body.destroy();
      deps.metrics.proxyCalls.record(method, status, (Date.now() - started) / 1000);
      logCall({ requestId: call.id, event: 'proxy.request', contextId: ctx.id, method, path: target.pathname, status, duration_ms: Date.now() - started, aborted: !res.writableFinished });
    });
  }

  /** The call's upstream request (sendUpstream, with the call's fields). */
  function send(p: Pending): Promise<UpstreamResponse> {
    return sendUpstream(p.call, p.req, p.res, p.target, p.tokens, deps, p.agent, p.body);
  }

  return fhirProxy;
}

/** A GET, HEAD or DELETE may not declare a body: the EHR could frame it differently from us (checklist #41). */
function refuseDeclaredBody(req: IncomingMessage, method: string): void {
  if (!BODILESS_METHODS.has(method)) return;
  const length = req.headers['content-length'];
  if (req.headers['transfer-encoding'] === undefined && (length === undefined || Number(length) === 0)) return;
  throw new AppError(ErrorCode.REQUEST_BODY_NOT_ALLOWED, 400, `A ${method} request cannot carry a body through the FHIR proxy (it declared one with ${req.headers['transfer-encoding'] !== undefined ? 'Transfer-Encoding' : 'Content-Length'}).`);
}

/**
 * Reads a POST, PUT or PATCH body: whole when it ends within WHOLE_REQUEST_BODY_LIMIT, else the part read so far
 * (the rest streams on). Past `maxBytes` → 413; the browser going away → 499, and nothing is sent upstream.
 */
function readBody(req: IncomingMessage, maxBytes: number): Promise<RequestBody> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let length = 0;
    const done = () => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('close', onClose);
      req.off('error', onClose);
    };
    const onData = (chunk: Buffer) => {
      chunks.push(chunk);
      length += chunk.length;
      if (length > maxBytes) {
        done();
        reject(new AppError(ErrorCode.PAYLOAD_TOO_LARGE, 413, `The request body is larger than ${maxBytes} bytes.`));
      } else if (length > WHOLE_REQUEST_BODY_LIMIT) {
        done();
        req.pause();
        resolve({ kind: 'stream', head: chunks, length });
      }
    };
    const onEnd = () => {
      done();
      resolve({ kind: 'whole', data: Buffer.concat(chunks, length) });
    };
    const onClose = () => {
      if (req.complete) return;
      done();
      reject(clientClosed());
    };
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('close', onClose);
    req.on('error', onClose);
  });
}

/** Sends one upstream request; resolves with the response once its headers arrive. */
function sendUpstream(call: ProxyCall, req: IncomingMessage, res: ServerResponse, target: TargetUrl, tokens: TokenSet, deps: SmartDeps, agent: Dispatcher, body: RequestBody): Promise<UpstreamResponse> {
  return new Promise((resolve, reject) => {
    let settled = false;
    let timer: NodeJS.Timeout | undefined;
    const settle = () => {
      settled = true;
      clearTimeout(timer);
      res.off('close', onClientClose);
    };
    // Framing is undici's, from the bytes sent: an exact Content-Length for a body read whole, chunked for a stream.
    const exchange = dispatch(agent, {
      origin: target.origin,
      path: `${target.pathname}${target.search}`,
      method: req.method ?? 'GET',
      headers: upstreamRequestHeaders(req.headers, tokens.accessToken, call.id),
      body: body.kind === 'none' ? null : body.kind === 'whole' ? body.data : restOfBody(req, body.head, body.length, deps.config.proxyMaxBodyBytes),
    }, {
      onResponse(upstream) {
        if (settled) {
          upstream.body.destroy();
          return;
        }
        settle();
        resolve(upstream);
      },
      onError(err) {
        if (settled) return;
        settle();
        reject(err instanceof UpstreamFailure || err instanceof AppError ? err : new UpstreamFailure('connect', err.code ?? err.message));
      },
    });
    const fail = (err: Error) => {
      if (settled) return;
      settle();
      exchange.abort(err);
      reject(err);
    };
    function onClientClose() {
      if (!res.headersSent) fail(clientClosed());
    }
    if (settled) return; // refused at once (undici checks the request before it is queued)
    timer = setTimeout(() => fail(new UpstreamFailure('timeout', `no response within ${deps.config.proxyTimeoutMs} ms`)), deps.config.proxyTimeoutMs);
    res.once('close', onClientClose);
  });
}

/**
 * The rest of a large request body, after what was read: streamed from the browser, counted against the limit.
 * Past it, or cut short by the browser, the upstream request ends unfinished (its connection is closed, so the
 * EHR never takes a partial body for a whole one). The browser's request is not destroyed: the error answer
 * (413) still goes back on it.
 */
async function* restOfBody(req: IncomingMessage, head: Buffer[], length: number, limit: number): AsyncGenerator<Buffer> {
  yield* head;
  let bytes = length;
  try {
    for await (const chunk of req.iterator({ destroyOnReturn: false }) as AsyncIterable<Buffer>) {
      bytes += chunk.length;
      if (bytes > limit) throw new UpstreamFailure('too_large', `request body over ${limit} bytes`);
      yield chunk;
    }
  } catch (err) {
    throw err instanceof UpstreamFailure ? err : clientClosed(); // the browser's request failed: it went away
  }
  if (!req.complete) throw clientClosed();
}

async function tokensOrEndContext(call: ProxyCall, ctx: LaunchContextInfo, refresher: TokenRefresher, sessions: Pick<ProxySessions, 'withoutContext'>, rejectedToken?: string): Promise<TokenSet> {
  try {
    return await refresher.tokensFor(ctx, () => call.log(), rejectedToken);
  } catch (err) {
    // The tokens are gone: the session no longer names this context.
    if (err instanceof AppError && err.code === ErrorCode.SESSION_EXPIRED && call.session && Object.hasOwn(call.session.data.contexts ?? {}, ctx.id)) {
      await sessions.withoutContext(call.session, ctx.id).catch(() => undefined);
      call.log().info({ event: 'context.ended', reason: 'session_expired' }, 'launch context ended');
    }
    throw err;
  }
}

function upstreamError(err: UpstreamFailure, timeoutMs: number): AppError {
  switch (err.kind) {
    case 'timeout':
      return new AppError(ErrorCode.UPSTREAM_TIMEOUT, 504, `The EHR's FHIR server did not answer within ${formatMs(timeoutMs)}.`, { hint: 'Try again; if it keeps happening, narrow the search.' });
    case 'too_large':
      return new AppError(ErrorCode.PAYLOAD_TOO_LARGE, 413, 'The request body is too large.');
    default:
      return new AppError(ErrorCode.UPSTREAM_UNAVAILABLE, 502, 'The EHR\'s FHIR server could not be reached.', { hint: 'Try again in a moment.' });
  }
}
