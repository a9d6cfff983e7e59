// The baseline the issue names: a bare Node reverse proxy that forwards with a bearer token over keep-alive and
// does nothing else (no session, no checks, no header filtering, no link rewriting, no log), on Node's own client with
// a keep-alive http.Agent (the settings smart-bff's proxy had on that client: 256 sockets per host). Prints its port.
// bare-undici-proxy.mjs is the same on undici, the client smart-bff's proxy uses now: a reference beside this one,
// against which the goals are measured.
import http from 'node:http';

const [port, upstreamPort] = process.argv.slice(2).map(Number);
const agent = new http.Agent({ keepAlive: true, maxSockets: 256, maxFreeSockets: 64 });
const AUTHORIZATION = 'Bearer bench-access-token-0123456789abcdefghijklmnopqrstuvwxyz';
const server = http.createServer((req, res) => {
  const up = http.request({
    host: '127.0.0.1', port: upstreamPort, method: req.method, path: req.url, agent,
    headers: { accept: req.headers.accept ?? 'application/fhir+json', authorization: AUTHORIZATION },
  }, (r) => {
    res.writeHead(r.statusCode, r.headers);
    r.pipe(res);
  });
  up.on('error', () => { res.writeHead(502); res.end(); });
  req.pipe(up);
});
server.keepAliveTimeout = 60_000;
server.listen(port, '127.0.0.1', () => process.stdout.write(`${server.address().port}\n`));
