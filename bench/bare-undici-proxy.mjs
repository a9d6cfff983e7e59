// A reference beside the baseline: the same bare proxy as bare-proxy.mjs (a bearer token, keep-alive,
// nothing else), on the HTTP client smart-bff's proxy uses: undici's Agent with the same options
// (src/proxy/upstream-client.ts), driven through `dispatch`. It shows how much of a difference the client alone
// makes; the goals are measured against bare-proxy.mjs. Prints its port.
import http from 'node:http';
import Agent from 'undici/lib/dispatcher/agent.js';

const [port, upstreamPort] = process.argv.slice(2).map(Number);
const agent = new Agent({ connections: 256, pipelining: 1, keepAliveTimeout: 4_000, keepAliveMaxTimeout: 60_000 });
const origin = `http://127.0.0.1:${upstreamPort}`;
const AUTHORIZATION = 'Bearer bench-access-token-0123456789abcdefghijklmnopqrstuvwxyz';
const server = http.createServer((req, res) => {
  agent.dispatch({
    origin, path: req.url, method: req.method, headersTimeout: 0, bodyTimeout: 0,
    headers: { accept: req.headers.accept ?? 'application/fhir+json', authorization: AUTHORIZATION },
  }, {
    onRequestStart() {},
    onResponseStart(_c, status, headers) { res.writeHead(status, headers); },
    onResponseData(c, chunk) { if (!res.write(chunk)) { c.pause(); res.once('drain', () => c.resume()); } },
    onResponseEnd() { res.end(); },
    onResponseError() { if (!res.headersSent) res.writeHead(502); res.end(); },
  });
});
server.keepAliveTimeout = 60_000;
server.listen(port, '127.0.0.1', () => process.stdout.write(`${server.address().port}\n`));
