import { browserResponseHeaders, upstreamRequestHeaders } from '../../src/proxy/headers.js';

describe('proxy header hygiene', () => {
  test('request: an allow-list; never the browser credentials, Host, X-Forwarded-* or hop-by-hop headers', () => {
    const out = upstreamRequestHeaders(
      {
        accept: 'application/fhir+json', 'content-type': 'application/fhir+json', 'if-none-match': 'W/"1"', prefer: 'return=representation',
        cookie: 'smart-bff.sid=abc', authorization: 'Bearer browser-supplied', host: 'app.example', 'x-forwarded-host': 'evil.example',
        'x-forwarded-for': '1.2.3.4', connection: 'keep-alive, x-custom', 'x-custom': '1', 'keep-alive': 'timeout=5', te: 'trailers',
        'transfer-encoding': 'chunked', upgrade: 'websocket', 'x-smart-context': 'ctx', 'x-csrf': '1', origin: 'https://evil.example',
      },
      'the-real-token',
      'req-1',
    );
    expect(out).toEqual({
      accept: 'application/fhir+json', 'content-type': 'application/fhir+json', 'if-none-match': 'W/"1"', prefer: 'return=representation',
      'accept-encoding': 'identity', 'x-request-id': 'req-1', authorization: 'Bearer the-real-token',
    });
  });

  test('a header named in Connection is dropped even when allow-listed', () => {
    expect(upstreamRequestHeaders({ connection: 'prefer', prefer: 'x' }, 't', 'r')).not.toHaveProperty('prefer');
  });

  test('response: an allow-list (Set-Cookie, hop-by-hop, Access-Control-*, WWW-Authenticate and headers acting on the origin removed); no-store, CSP sandbox, nosniff and same-origin added', () => {
    const out = browserResponseHeaders(
      {
        'content-type': 'application/fhir+json', etag: 'W/"2"', location: 'x', 'last-modified': 'y', 'set-cookie': ['a=b'],
        'access-control-allow-origin': '*', 'access-control-allow-credentials': 'true', connection: 'close', 'transfer-encoding': 'chunked',
        'www-authenticate': 'Basic realm=x', 'cache-control': 'public, max-age=3600', 'content-length': '10',
        refresh: '0;url=https://evil.example', link: '<https://evil.example/a.css>; rel=stylesheet', 'clear-site-data': '"*"',
        'content-security-policy': 'default-src *', 'service-worker-allowed': '/', 'x-unknown-vendor-header': 'x', 'x-progress': 'busy',
      },
      { dropContentLength: true },
    );
    expect(out).toEqual({
      'content-type': 'application/fhir+json', etag: 'W/"2"', location: 'x', 'last-modified': 'y', 'x-progress': 'busy', 'cache-control': 'no-store', pragma: 'no-cache',
      'content-security-policy': "sandbox; default-src 'none'", 'x-content-type-options': 'nosniff', 'cross-origin-resource-policy': 'same-origin',
    });
    expect(browserResponseHeaders({ 'content-length': '10' }, { dropContentLength: false })['content-length']).toBe('10');
  });
});
