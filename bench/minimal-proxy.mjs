// The same-runtime baseline: a minimal Node reverse proxy (node:http piping, keep-alive, no auth, no checks).
import http from 'node:http';
const [port, upstreamPort] = process.argv.slice(2).map(Number);
const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });
const server = http.createServer((req, res) => {
  const up = http.request({ host: '127.0.0.1', port: upstreamPort, method: req.method, path: req.url.replace(/^\/fhir/, '/fhir'), headers: { accept: req.headers.accept ?? '*/*' }, agent }, (r) => {
    res.writeHead(r.statusCode, r.headers);
    r.pipe(res);
  });
  up.on('error', () => { res.writeHead(502); res.end(); });
  req.pipe(up);
});
server.keepAliveTimeout = 60_000;
server.listen(port, '127.0.0.1', () => process.stdout.write(`${server.address().port}\n`));
