/**
 * A FHIR server double on a raw socket (`net.createServer`), strict about HTTP/1.1 framing the way real servers
 * are, so that request smuggling shows: it keeps connections alive, honours `Content-Length` on ANY method (a GET
 * with `Content-Length: 5` makes it take the next 5 bytes as that GET's body, whatever they are), decodes chunked
 * bodies, answers every request it parses, and answers `400 Bad Request` and closes on bytes that do not parse.
 * It records the raw bytes of each connection and each parsed request with its exact bytes.
 *
 * `answerAt`: `end` (default) answers once the whole message (head and body) has arrived, as servers that read
 * the body before dispatching do; `head` answers as soon as the head is parsed and then reads the body, as
 * servers whose GET handlers never touch a body do (Node's http module, many frameworks).
 */
import net from 'node:net';
import type { AddressInfo } from 'node:net';

export interface ParsedRequest {
  /** Which connection it arrived on (0, 1, …) and its place on it. */
  connection: number;
  index: number;
  method: string;
  target: string;
  /** Header names lower-cased, in arrival order. */
  headers: [string, string][];
  body: Buffer;
  /** The request's exact bytes: head and framed body. */
  raw: Buffer;
  /** The head's bytes, up to and including the blank line. */
  head: Buffer;
}

export interface RawConnection {
  id: number;
  /** Every byte received on this connection. */
  readonly raw: Buffer;
  /** How many. */
  readonly length: number;
  requests: ParsedRequest[];
  /** Framing errors answered with 400 (the connection is closed after each). */
  errors: string[];
  closed: boolean;
}

export interface RawUpstream {
  url: string;
  /** The FHIR base to point a launch at: `<url>/fhir`. */
  base: string;
  answerAt: 'head' | 'end';
  connections: RawConnection[];
  /** Every parsed request, in arrival order across connections. */
  requests(): ParsedRequest[];
  errors(): string[];
  bytesReceived(): number;
  close(): Promise<void>;
}

class FramingError extends Error {}

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

export function header(req: Pick<ParsedRequest, 'headers'>, name: string): string | undefined {
  const all = req.headers.filter(([n]) => n === name).map(([, v]) => v);
  return all.length ? all.join(', ') : undefined;
}

export async function startRawUpstream(opts: { answerAt?: 'head' | 'end' } = {}): Promise<RawUpstream> {
  const connections: RawConnection[] = [];
  const sockets = new Set<net.Socket>();
  const all: ParsedRequest[] = [];
  const state = { answerAt: opts.answerAt ?? 'end' };

  const server = net.createServer((socket) => {
    sockets.add(socket);
    const received: Buffer[] = [];
    const conn: RawConnection = {
      id: connections.length, requests: [], errors: [], closed: false,
      get raw() { return Buffer.concat(received); },
      get length() { return received.reduce((n, c) => n + c.length, 0); },
    };
    connections.push(conn);
    let pending: Buffer = Buffer.alloc(0);
    // The message being read: its head is parsed, its body is still arriving.
    let current: { method: string; target: string; headers: [string, string][]; headLength: number; answered: boolean } | undefined;

    const answer = (method: string, target: string, bodyLength: number | null) => {
      const body = method === 'HEAD' ? '' : JSON.stringify({ resourceType: 'Basic', seen: { method, target, bodyLength, connection: conn.id } });
      const length = method === 'HEAD' ? Buffer.byteLength(JSON.stringify({ resourceType: 'Basic' })) : Buffer.byteLength(body);
      socket.write(`HTTP/1.1 200 OK\r\ncontent-type: application/fhir+json\r\ncontent-length: ${length}\r\nconnection: keep-alive\r\n\r\n${body}`);
    };
    const fail = (reason: string) => {
      conn.errors.push(reason);
      socket.end('HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\ncontent-length: 11\r\nconnection: close\r\n\r\nBad Request');
      pending = Buffer.alloc(0);
      current = undefined;
      socket.removeAllListeners('data');
    };

    const parse = () => {
      for (;;) {
        if (!current) {
          const end = pending.indexOf('\r\n\r\n');
          if (end === -1) {
            if (pending.length > 16 * 1024) fail('head too long');
            return;
          }
          const lines = pending.subarray(0, end).toString('latin1').split('\r\n');
          const m = /^([A-Z]+) (\S+) HTTP\/1\.[01]$/.exec(lines[0]!);
          if (!m || !TOKEN.test(m[1]!)) throw new FramingError(`bad request line: ${JSON.stringify(lines[0]!.slice(0, 80))}`);
          const headers: [string, string][] = [];
          for (const line of lines.slice(1)) {
            const colon = line.indexOf(':');
            const name = line.slice(0, colon);
            if (colon <= 0 || !TOKEN.test(name)) throw new FramingError(`bad header line: ${JSON.stringify(line.slice(0, 80))}`);
            headers.push([name.toLowerCase(), line.slice(colon + 1).trim()]);
          }
          current = { method: m[1]!, target: m[2]!, headers, headLength: end + 4, answered: false };
          if (state.answerAt === 'head') {
            current.answered = true;
            answer(current.method, current.target, null);
          }
        }
        const body = readBody(pending.subarray(current.headLength), current.headers);
        if (!body) return; // the body has not all arrived
        const raw = pending.subarray(0, current.headLength + body.framedLength);
        const req: ParsedRequest = {
          connection: conn.id, index: conn.requests.length, method: current.method, target: current.target, headers: current.headers,
          body: Buffer.from(body.body), raw: Buffer.from(raw), head: Buffer.from(pending.subarray(0, current.headLength)),
        };
        conn.requests.push(req);
        all.push(req);
        if (!current.answered) answer(req.method, req.target, req.body.length);
        pending = pending.subarray(raw.length);
        current = undefined;
      }
    };

    socket.on('data', (chunk: Buffer) => {
      received.push(chunk);
      pending = pending.length ? Buffer.concat([pending, chunk]) : chunk;
      try {
        parse();
      } catch (err) {
        if (err instanceof FramingError) fail(err.message);
        else throw err;
      }
    });
    socket.on('error', () => undefined);
    socket.on('close', () => { conn.closed = true; sockets.delete(socket); });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    base: `${url}/fhir`,
    get answerAt() { return state.answerAt; },
    set answerAt(v: 'head' | 'end') { state.answerAt = v; },
    connections,
    requests: () => [...all],
    errors: () => connections.flatMap((c) => c.errors),
    bytesReceived: () => connections.reduce((n, c) => n + c.length, 0),
    close: () => new Promise<void>((r) => { for (const s of sockets) s.destroy(); server.close(() => r()); }),
  } as RawUpstream;
}

/**
 * The body that follows a head, framed as RFC 9112 §6 says: Transfer-Encoding (chunked last) wins, else
 * Content-Length, else none. Returns undefined while incomplete; throws FramingError on bad framing.
 */
function readBody(bytes: Buffer, headers: [string, string][]): { body: Buffer; framedLength: number } | undefined {
  const te = header({ headers }, 'transfer-encoding');
  const cl = headers.filter(([n]) => n === 'content-length').map(([, v]) => v);
  if (te !== undefined) {
    if (cl.length) throw new FramingError('both Transfer-Encoding and Content-Length');
    const codings = te.split(',').map((s) => s.trim().toLowerCase());
    if (codings.at(-1) !== 'chunked') throw new FramingError(`unsupported transfer-encoding ${te}`);
    return readChunked(bytes);
  }
  if (cl.length) {
    const values = new Set(cl.flatMap((v) => v.split(',').map((s) => s.trim())));
    const [value] = [...values];
    if (values.size !== 1 || !/^\d+$/.test(value!)) throw new FramingError(`bad content-length ${cl.join(', ')}`);
    const n = Number(value);
    if (bytes.length < n) return undefined;
    return { body: bytes.subarray(0, n), framedLength: n };
  }
  return { body: Buffer.alloc(0), framedLength: 0 };
}

function readChunked(bytes: Buffer): { body: Buffer; framedLength: number } | undefined {
  const parts: Buffer[] = [];
  let i = 0;
  for (;;) {
    const eol = bytes.indexOf('\r\n', i);
    if (eol === -1) return undefined;
    const sizeText = bytes.subarray(i, eol).toString('latin1').split(';')[0]!.trim();
    if (!/^[0-9a-fA-F]+$/.test(sizeText)) throw new FramingError(`bad chunk size ${JSON.stringify(sizeText.slice(0, 20))}`);
    const size = parseInt(sizeText, 16);
    i = eol + 2;
    if (size === 0) {
      // trailer section, then the final CRLF
      for (;;) {
        const end = bytes.indexOf('\r\n', i);
        if (end === -1) return undefined;
        const line = bytes.subarray(i, end);
        i = end + 2;
        if (line.length === 0) return { body: Buffer.concat(parts), framedLength: i };
      }
    }
    if (bytes.length < i + size + 2) return undefined;
    parts.push(bytes.subarray(i, i + size));
    if (bytes.subarray(i + size, i + size + 2).toString('latin1') !== '\r\n') throw new FramingError('chunk not followed by CRLF');
    i += size + 2;
  }
}
