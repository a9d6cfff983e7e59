// A fast local FHIR upstream for benchmarks: one small Patient resource, keep-alive. Run as its own process.
import http from 'node:http';
const body = JSON.stringify({
  resourceType: 'Patient', id: 'bench-1', meta: { versionId: '1', lastUpdated: '2026-11-01T00:00:00Z' }, active: true,
  name: [{ use: 'official', family: 'Shaw', given: ['Amy', 'V.'] }], gender: 'female', birthDate: '1987-02-20',
  identifier: [{ system: 'urn:oid:2.16.840.1.113883.19.5.99999.1', value: '100200' }],
  telecom: [{ system: 'phone', value: '555-0110', use: 'home' }],
});
const server = http.createServer((req, res) => {
  req.resume();
  res.writeHead(200, { 'content-type': 'application/fhir+json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
});
server.keepAliveTimeout = 60_000;
server.listen(Number(process.argv[2] ?? 0), '127.0.0.1', () => process.stdout.write(`${server.address().port}\n`));
