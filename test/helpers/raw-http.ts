/**
 * Raw HTTP/1.1 on a socket, for requests fetch cannot send: a GET with a body, hand-made framing (Content-Length
 * and Transfer-Encoding as the test writes them), a request target of `*`, a body cut short. Resolves with the
 * first final response (1xx interim responses are skipped), read by its own framing.
 */
import net from 'node:net';

export interface RawResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
}

export interface RawOptions {
  /** Destroy the socket after writing (a browser that goes away mid-request); resolves with undefined. */
  hangUp?: boolean;
  timeoutMs?: number;
}

export function rawHttp(baseUrl: string, bytes: string | Buffer, opts: RawOptions & { hangUp: true }): Promise<undefined>;
export function rawHttp(baseUrl: string, bytes: string | Buffer, opts?: RawOptions): Promise<RawResponse>;
export function rawHttp(baseUrl: string, bytes: string | Buffer, opts: RawOptions = {}): Promise<RawResponse | undefined> {
  const u = new URL(baseUrl);
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(u.port), u.hostname);
    let buf = Buffer.alloc(0);
    const isHead = (typeof bytes === 'string' ? bytes : bytes.toString('latin1', 0, 5)).startsWith('HEAD '); // no body follows
    const timer = setTimeout(() => { socket.destroy(); reject(new Error(`no response within ${opts.timeoutMs ?? 10000} ms`)); }, opts.timeoutMs ?? 10000);
    socket.on('connect', () => {
      socket.write(bytes);
      if (opts.hangUp) {
        setTimeout(() => { socket.destroy(); clearTimeout(timer); resolve(undefined); }, 50);
      }
    });
    socket.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      for (;;) {
        const res = parseResponse(buf, isHead);
        if (!res) return;
        if (res.response.status >= 100 && res.response.status < 200) {
          buf = buf.subarray(res.length);
          continue;
        }
        clearTimeout(timer);
        socket.destroy();
        resolve(res.response);
        return;
      }
    });
    socket.on('error', (err) => { clearTimeout(timer); reject(err); });
    socket.on('close', () => { clearTimeout(timer); reject(new Error(`connection closed before a response: ${JSON.stringify(buf.toString('latin1').slice(0, 200))}`)); });
  });
}

function parseResponse(buf: Buffer, isHead: boolean): { response: RawResponse; length: number } | undefined {
  const end = buf.indexOf('\r\n\r\n');
  if (end === -1) return undefined;
  const [statusLine, ...lines] = buf.subarray(0, end).toString('latin1').split('\r\n');
  const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(statusLine!)?.[1]);
  const headers: Record<string, string> = {};
  for (const line of lines) {
    const i = line.indexOf(':');
    const name = line.slice(0, i).toLowerCase();
    headers[name] = headers[name] !== undefined ? `${headers[name]}, ${line.slice(i + 1).trim()}` : line.slice(i + 1).trim();
  }
  const start = end + 4;
  if (isHead || status < 200 || status === 204 || status === 304) return { response: { status, headers, body: '' }, length: start };
  if (headers['transfer-encoding']?.toLowerCase().includes('chunked')) {
    const parts: Buffer[] = [];
    let i = start;
    for (;;) {
      const eol = buf.indexOf('\r\n', i);
      if (eol === -1) return undefined;
      const size = parseInt(buf.subarray(i, eol).toString('latin1'), 16);
      i = eol + 2;
      if (size === 0) {
        const fin = buf.indexOf('\r\n', i);
        if (fin === -1) return undefined;
        return { response: { status, headers, body: Buffer.concat(parts).toString('utf8') }, length: fin + 2 };
      }
      if (buf.length < i + size + 2) return undefined;
      parts.push(buf.subarray(i, i + size));
      i += size + 2;
    }
  }
  const n = Number(headers['content-length'] ?? 0);
  if (buf.length < start + n) return undefined;
  return { response: { status, headers, body: buf.subarray(start, start + n).toString('utf8') }, length: start + n };
}
