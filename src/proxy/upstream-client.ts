/**
 * The FHIR proxy's HTTP client to the EHRs' FHIR servers: undici's Agent (one keep-alive pool per origin, HTTP/1.1,
 * no pipelining, redirects never followed), driven through its low-level `dispatch`. A proxied small read costs less
 * CPU this way than through Node's http.request and a keep-alive http.Agent, because no ClientRequest and no
 * IncomingMessage stream is made per call (docs/benchmarks.md has a bare proxy on each client, side by side).
 *
 * The Agent is loaded on the first proxied call (a chunk of its own in the bundle), so production start-up does not
 * parse it. undici's own `index.js` loads fetch, WebSocket, caches and mocks as well, so only the Agent's module is
 * imported (`undici/lib/dispatcher/agent.js`, typed in src/types/undici-agent.d.ts). That path is inside the
 * package, which is why package.json takes undici's patch releases only (~7.30); the bundle test and every proxy
 * test load it.
 *
 * Framing, as fhir-proxy.ts needs it: a body read whole goes with its exact Content-Length (undici sets it from the
 * bytes), a streamed body goes chunked, no body means no Content-Length; undici refuses Transfer-Encoding,
 * Connection, Keep-Alive, Upgrade and Expect request headers, and header values with CR or LF.
 */
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';
import type { Writable } from 'node:stream';
import type { Dispatcher, Agent as UndiciAgent } from 'undici';

/** The options of undici's Agent this proxy sets (its pools per origin). */
const AGENT_OPTIONS = {
  connections: 256, // per origin, like the http.Agent's maxSockets before
  pipelining: 1,
  // An idle connection is kept 4 s (undici's default); a server that announces its own idle timeout in Keep-Alive
  // gets that, less 2 s, up to a minute: a connection is not reused just as the server closes it.
  keepAliveTimeout: 4_000,
  keepAliveMaxTimeout: 60_000,
} as const;

/** A keep-alive pool per EHR origin, made on first use. One per app (app.locals.proxyClient). */
export class UpstreamClient {
  #agent: Promise<UndiciAgent> | undefined;
  #made: UndiciAgent | undefined;

  /** The Agent, loaded and made on first use; later calls get the same one. */
  agent(): Promise<UndiciAgent> {
    return (this.#agent ??= import('undici/lib/dispatcher/agent.js').then((m) => (this.#made = new m.default(AGENT_OPTIONS))));
  }

  /** The Agent once it is made (every call after the first), else undefined: no need to wait for `agent()`. */
  get made(): UndiciAgent | undefined {
    return this.#made;
  }

  /** Connections per origin: open, free (idle, kept alive), running a request, and requests waiting for one. */
  async stats(): Promise<{ connected: number; free: number; running: number; pending: number }> {
    const total = { connected: 0, free: 0, running: 0, pending: 0 };
    if (!this.#agent) return total;
    for (const s of Object.values((await this.#agent).stats) as Array<{ connected: number; free: number; running: number; pending: number }>) {
      total.connected += s.connected;
      total.free += s.free;
      total.running += s.running;
      total.pending += s.pending;
    }
    return total;
  }

  /** Closes every pooled connection (shutdown). */
  async close(): Promise<void> {
    if (this.#agent) await (await this.#agent).close();
  }
}

export interface UpstreamRequest {
  /** `http://ehr.example.com:8080` */
  origin: string;
  /** The path with its query, already checked (target-url.ts). */
  path: string;
  method: string;
  headers: OutgoingHttpHeaders;
  /** null: none; a Buffer: sent whole with its Content-Length; an async iterable: streamed chunked. */
  body: Buffer | AsyncIterable<Buffer> | null;
}

/** Why an exchange failed, before or after its response began. */
export type UpstreamError = Error & { code?: string };

/**
 * Sends one request; `onResponse` is called with its response once the headers arrive, `onError` if it fails before
 * that. After the headers, a failure reaches the body's consumer (UpstreamBody).
 */
export function dispatch(agent: Dispatcher, request: UpstreamRequest, handlers: { onResponse(res: UpstreamResponse): void; onError(err: UpstreamError): void }): UpstreamExchange {
  const exchange = new UpstreamExchange(handlers);
  agent.dispatch({
    origin: request.origin,
    path: request.path,
    method: request.method as Dispatcher.HttpMethod,
    headers: request.headers as Record<string, string>,
    body: request.body as Dispatcher.DispatchOptions['body'], // undici also takes an async iterable (its docs; not its types)
    // The proxy times the wait for the headers itself (FHIR_PROXY_TIMEOUT_MS); a body streams as long as it flows,
    // as it did through Node's http client.
    headersTimeout: 0,
    bodyTimeout: 0,
  }, exchange);
  return exchange;
}

/** One request and its response: the dispatch handler, and what the proxy holds to abort it. */
export class UpstreamExchange implements Dispatcher.DispatchHandler {
  #controller: Dispatcher.DispatchController | undefined;
  #abortReason: Error | undefined;
  #response: UpstreamResponse | undefined;
  #done = false;

  constructor(private readonly handlers: { onResponse(res: UpstreamResponse): void; onError(err: UpstreamError): void }) {}

  /** Ends the exchange: before the request is written it never is; after, its connection is closed. */
  abort(reason: Error): void {
    if (this.#done) return;
    this.#abortReason ??= reason;
    this.#controller?.abort(reason);
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.#controller = controller;
    if (this.#abortReason) controller.abort(this.#abortReason); // aborted while waiting for a connection
  }

  onResponseStart(controller: Dispatcher.DispatchController, statusCode: number, headers: Record<string, string | string[] | undefined>): void {
    if (statusCode < 200 || this.#response) return; // 1xx informational: the final response follows
    this.#response = new UpstreamResponse(statusCode, nodeHeaders(headers), controller);
    this.handlers.onResponse(this.#response);
  }

  onResponseData(_controller: Dispatcher.DispatchController, chunk: Buffer): void {
    this.#response?.body.push(chunk);
  }

  onResponseEnd(): void {
    this.#done = true;
    this.#response?.body.end();
  }

  onResponseError(_controller: Dispatcher.DispatchController, err: Error): void {
    this.#done = true;
    if (this.#response) this.#response.body.fail(err);
    else this.handlers.onError(err);
  }
}

/** What a body streamed through `pipeTo` goes through: its chunks mapped, a turn's at a time, then whatever is left at its end. */
export interface ChunkMap {
  chunks(data: readonly Buffer[]): Buffer;
  end(): Buffer;
}

/** What a sink of the body does with it. */
interface BodySink {
  write(chunk: Buffer): void;
  end(): void;
  error(err: Error): void;
}

/**
 * A response's body, from undici's callbacks to one consumer. What arrives before a consumer is attached (often the
 * whole of a small body, in the same read as the headers) is held and handed over when one is.
 */
export class UpstreamBody {
  #held: Buffer[] = [];
  #ended = false;
  #failed: Error | undefined;
  #sink: BodySink | undefined;

  constructor(private readonly controller: Dispatcher.DispatchController) {}

  push(chunk: Buffer): void {
    if (this.#sink) this.#sink.write(chunk);
    else this.#held.push(chunk);
  }

  end(): void {
    this.#ended = true;
    this.#sink?.end();
  }

  fail(err: Error): void {
    this.#failed = err;
    this.#sink?.error(err);
  }

  #attach(sink: BodySink): void {
    if (this.#sink) throw new Error('the upstream body already has a consumer');
    this.#sink = sink;
    const held = this.#held;
    this.#held = [];
    for (const chunk of held) sink.write(chunk);
    if (this.#failed) sink.error(this.#failed);
    else if (this.#ended) sink.end();
  }

  /** The whole body, once it has ended. */
  collect(onBody: (body: Buffer) => void, onError: (err: Error) => void): void {
    const chunks: Buffer[] = [];
    this.#attach({ write: (c) => chunks.push(c), end: () => onBody(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks)), error: onError });
  }

  /**
   * Streams the body into `dest` and ends it, with back-pressure: while `dest` is full the upstream is paused (its
   * socket is not read). With `map` (link rewriting), the chunks that arrive in one turn of the event loop (one read
   * of the upstream's socket often holds several pieces of a chunked body) go through it together when the turn's
   * callbacks are done, and out as one write: one search, one buffer and, for the browser, one chunk for all of them,
   * instead of one each. What it holds at the end goes last. A failure mid-body calls `onError` (`dest` is not
   * ended: its response was cut short).
   */
  pipeTo(dest: Writable, onError: (err: Error) => void, map?: ChunkMap): void {
    const { controller } = this;
    let waiting = false;
    const onDrain = () => {
      waiting = false;
      controller.resume();
    };
    const send = (out: Buffer) => {
      if (out.length === 0 || dest.write(out) || waiting) return;
      waiting = true;
      controller.pause();
      dest.once('drain', onDrain);
    };
    /** This turn's chunks, for `map`. */
    let turn: Buffer[] = [];
    const mapTurn = () => {
      const chunks = turn;
      turn = [];
      if (chunks.length > 0 && !dest.destroyed) send(map!.chunks(chunks));
    };
    this.#attach({
      write: map
        ? (chunk) => {
            if (turn.push(chunk) === 1) process.nextTick(mapTurn);
          }
        : send,
      end: () => {
        if (!map) return void dest.end();
        mapTurn();
        const rest = map.end();
        if (rest.length) dest.end(rest);
        else dest.end();
      },
      error: (err) => {
        turn = [];
        onError(err);
      },
    });
  }

  /** Reads and drops the body (a 401 before its retry): its connection goes back to the pool when it ends. */
  discard(): void {
    this.#attach({ write: () => undefined, end: () => undefined, error: () => undefined });
  }

  /** Stops reading: the connection is closed (a browser gone mid-body). */
  destroy(): void {
    if (this.#ended || this.#failed) return;
    this.controller.abort(new Error('the browser went away'));
  }
}

export class UpstreamResponse {
  readonly body: UpstreamBody;

  constructor(readonly statusCode: number, readonly headers: IncomingHttpHeaders, controller: Dispatcher.DispatchController) {
    this.body = new UpstreamBody(controller);
  }
}

/**
 * Header names of which Node's HTTP client keeps only the first when a response repeats them (IncomingMessage's
 * rules); a repeated header of any other name is joined with ", ". The proxy's header allow-list then works on
 * what it did with Node's client.
 */
const FIRST_ONLY = new Set([
  'content-type', 'content-length', 'user-agent', 'referer', 'host', 'authorization', 'proxy-authorization',
  'if-modified-since', 'if-unmodified-since', 'from', 'location', 'max-forwards', 'retry-after', 'etag',
  'last-modified', 'server', 'age', 'expires',
]);

function nodeHeaders(headers: Record<string, string | string[] | undefined>): IncomingHttpHeaders {
  for (const name in headers) {
    const value = headers[name];
    if (!Array.isArray(value) || name === 'set-cookie') continue;
    headers[name] = FIRST_ONLY.has(name) ? value[0]! : value.join(name === 'cookie' ? '; ' : ', ');
  }
  return headers as IncomingHttpHeaders;
}
