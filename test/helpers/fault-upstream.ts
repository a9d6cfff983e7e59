/**
 * A real HTTP server standing in for an EHR's FHIR server that misbehaves on demand: hangs, resets, 5xx,
 * huge streamed bodies, redirects. It records what it receives (method, path, headers) for assertions.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export type FaultMode =
  | { kind: 'ok'; body?: string; contentType?: string; status?: number; headers?: Record<string, string | string[]> }
  | { kind: 'hang' }
  /** Sends its headers and a first chunk of the body, then holds the response open. */
  | { kind: 'open' }
  | { kind: 'reset' }
  | { kind: 'status'; status: number; body?: string }
  | { kind: 'huge'; bytes: number; contentType: string; line: string }
  | { kind: 'echo' };

export interface Received {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body: string;
}

export interface FaultUpstream {
  url: string;
  base: string;
  mode: FaultMode;
  received: Received[];
  openSockets(): number;
  aborted: number;
  /** Bytes of 'huge' bodies written so far (what the proxy has taken from the upstream). */
  hugeBytesSent: number;
  close(): Promise<void>;
}

/** `host`: the address to listen on (`::1` for an EHR reached at an IPv6 literal, `http://[::1]:port`). */
export async function startFaultUpstream(path = '/fhir', host = '127.0.0.1'): Promise<FaultUpstream> {
  const state: { mode: FaultMode; received: Received[]; aborted: number; hugeBytesSent: number } = { mode: { kind: 'ok' }, received: [], aborted: 0, hugeBytesSent: 0 };
  const sockets = new Set<import('node:net').Socket>();
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      state.received.push({ method: req.method!, url: req.url!, headers: req.headers, body: Buffer.concat(chunks).toString() });
      const mode = state.mode;
      switch (mode.kind) {
        case 'hang':
          res.on('close', () => state.aborted++);
          return;
        case 'reset':
          req.socket.destroy();
          return;
        case 'open':
          res.writeHead(200, { 'content-type': 'application/octet-stream' });
          res.write('first chunk');
          res.on('close', () => state.aborted++);
          return;
        case 'status':
          res.writeHead(mode.status, { 'content-type': 'application/fhir+json' });
          res.end(mode.body ?? JSON.stringify({ resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'exception' }] }));
          return;
        case 'echo':
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ method: req.method, url: req.url, headers: req.headers, body: Buffer.concat(chunks).toString() }));
          return;
        case 'huge': {
          res.writeHead(200, { 'content-type': mode.contentType });
          let sent = 0;
          const line = Buffer.from(mode.line);
          const block = Buffer.concat(Array.from({ length: Math.max(1, Math.floor(65536 / line.length)) }, () => line));
          const write = () => {
            while (sent < mode.bytes) {
              sent += block.length;
              state.hugeBytesSent += block.length;
              if (!res.write(block)) return void res.once('drain', write);
            }
            res.end();
          };
          res.on('close', () => { if (sent < mode.bytes) state.aborted++; });
          write();
          return;
        }
        default:
          res.writeHead(mode.status ?? 200, { 'content-type': mode.contentType ?? 'application/fhir+json', ...(mode.headers ?? {}) });
          res.end(mode.body ?? JSON.stringify({ resourceType: 'Patient', id: '1' }));
      }
    });
  });
  server.on('connection', (s) => { sockets.add(s); s.on('close', () => sockets.delete(s)); });
  await new Promise<void>((r) => server.listen(0, host, r));
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${(server.address() as AddressInfo).port}`;
  return {
    url,
    base: `${url}${path}`,
    get mode() { return state.mode; },
    set mode(m: FaultMode) { state.mode = m; },
    received: state.received,
    get aborted() { return state.aborted; },
    get hugeBytesSent() { return state.hugeBytesSent; },
    openSockets: () => sockets.size,
    close: () => new Promise<void>((r) => { for (const s of sockets) s.destroy(); server.close(() => r()); }),
  } as FaultUpstream;
}
