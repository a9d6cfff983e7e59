// A fast local FHIR upstream for benchmarks, run as its own process. Prints its port.
//   GET /fhir/Patient/bench-1          one Patient of about 1 KB, keep-alive
//   GET /fhir/Bundle/large?mb=N        a searchset Bundle of about N MB (Content-Length set), every entry's
//                                      fullUrl and reference pointing at this server's base (work for the rewriter)
//   GET /fhir/Observation.ndjson?mb=N  about N MB of Observation NDJSON (chunked), links likewise
// Large bodies are generated from one repeated block, so the upstream costs little CPU.
import http from 'node:http';

const small = JSON.stringify({
  resourceType: 'Patient', id: 'bench-1', meta: { versionId: '1', lastUpdated: '2026-11-01T00:00:00Z' }, active: true,
  name: [{ use: 'official', family: 'Shaw', given: ['Amy', 'V.'] }], gender: 'female', birthDate: '1987-02-20',
  identifier: [{ system: 'urn:oid:2.16.840.1.113883.19.5.99999.1', value: '100200' }],
  telecom: [{ system: 'phone', value: '555-0110', use: 'home' }, { system: 'email', value: 'amy.shaw@example.com', use: 'work' }],
  text: { status: 'generated', div: '<div xmlns="http://www.w3.org/1999/xhtml"><p>Amy V. Shaw, female, born 1987-02-20 (MRN 100200)</p></div>' },
  address: [{ use: 'home', line: ['49 Meadow St'], city: 'Mounds', state: 'OK', postalCode: '74047', country: 'US' }],
  maritalStatus: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-MaritalStatus', code: 'M', display: 'Married' }] },
  contact: [{ relationship: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v2-0131', code: 'C', display: 'Emergency Contact' }] }],
    name: { family: 'Shaw', given: ['Jon'] }, telecom: [{ system: 'phone', value: '555-0111' }] }],
  managingOrganization: { reference: 'Organization/bench-org', display: 'Bench Clinic' },
});

const MB = 1024 * 1024;
const observation = (base, i) => ({
  resourceType: 'Observation', id: `obs-${i}`, status: 'final',
  code: { coding: [{ system: 'http://loinc.org', code: '8867-4', display: 'Heart rate' }] },
  subject: { reference: `${base}/Patient/bench-1` }, effectiveDateTime: '2026-11-01T08:00:00Z',
  valueQuantity: { value: 60 + (i % 40), unit: 'beats/minute', system: 'http://unitsofmeasure.org', code: '/min' },
});

/** A block of about 64 KB, repeated: `count` entries built by `entry`, joined by `sep`. */
function block(entry, sep) {
  const parts = [];
  let size = 0;
  for (let i = 0; size < 64 * 1024; i++) {
    const s = entry(i);
    parts.push(s);
    size += Buffer.byteLength(s) + sep.length;
  }
  return Buffer.from(parts.join(sep) + sep);
}

function sendRepeated(res, head, body, repeats, tail, headers) {
  const length = head.length + body.length * repeats + tail.length;
  res.writeHead(200, { ...headers, ...(headers['transfer-encoding'] ? {} : { 'content-length': length }) });
  let left = repeats;
  res.write(head);
  const pump = () => {
    while (left > 0) {
      left--;
      if (!res.write(body)) return void res.once('drain', pump);
    }
    res.end(tail);
  };
  pump();
}

const server = http.createServer((req, res) => {
  req.resume();
  const url = new URL(req.url, 'http://x');
  const base = `http://${req.headers.host}/fhir`;
  const mb = Math.max(1, Number(url.searchParams.get('mb') ?? 1));
  if (url.pathname === '/fhir/Bundle/large') {
    const body = block((i) => JSON.stringify({ fullUrl: `${base}/Observation/obs-${i}`, resource: observation(base, i), search: { mode: 'match' } }), ',');
    const head = Buffer.from(JSON.stringify({ resourceType: 'Bundle', type: 'searchset', link: [{ relation: 'self', url: `${base}/Observation?_count=1000` }], entry: [] }).replace('"entry":[]}', '"entry":['));
    const tail = Buffer.from(`${JSON.stringify({ fullUrl: `${base}/Observation/last`, resource: observation(base, -1) })}]}`);
    return sendRepeated(res, head, body, Math.round((mb * MB) / body.length), tail, { 'content-type': 'application/fhir+json' });
  }
  if (url.pathname === '/fhir/Observation.ndjson') {
    const body = block((i) => JSON.stringify(observation(base, i)), '\n');
    return sendRepeated(res, Buffer.alloc(0), body, Math.round((mb * MB) / body.length), Buffer.alloc(0), { 'content-type': 'application/fhir+ndjson', 'transfer-encoding': 'chunked' });
  }
  res.writeHead(200, { 'content-type': 'application/fhir+json', 'content-length': Buffer.byteLength(small) });
  res.end(small);
});
server.keepAliveTimeout = 60_000;
server.listen(Number(process.argv[2] ?? 0), '127.0.0.1', () => process.stdout.write(`${server.address().port}\n`));
