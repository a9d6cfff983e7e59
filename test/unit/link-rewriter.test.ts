import { Readable } from 'node:stream';
import { text } from 'node:stream/consumers';
import { LinkRewriter, needlesFor, rewriteBody } from '../../src/proxy/link-rewriter.js';

const UP = 'https://ehr.example.com/fhir/r4';
const PROXY = 'https://app.example.org/fhir';

async function streamThrough(chunks: string[]): Promise<string> {
  return text(Readable.from(chunks.map((c) => Buffer.from(c))).pipe(new LinkRewriter(needlesFor(UP, PROXY))));
}

describe('LinkRewriter', () => {
  const bundle = JSON.stringify({
    resourceType: 'Bundle',
    link: [{ relation: 'next', url: `${UP}/Observation?_getpages=abc&_count=10` }, { relation: 'self', url: `${UP}?x` }],
    entry: [{ fullUrl: `${UP}/Observation/1`, resource: { subject: { reference: `${UP}/Patient/1` } } }],
    other: 'https://ehr.example.com/fhir/r4b/Patient/1',
    elsewhere: 'https://other.example.com/fhir/r4/Patient/1',
    escaped: 'ESCAPED',
    end: UP,
  }).replace('ESCAPED', String.raw`https:\/\/ehr.example.com\/fhir\/r4\/Patient\/2`);

  test('rewrites every upstream URL and nothing else', async () => {
    const out = await streamThrough([bundle]);
    expect(out).toContain(`"url":"${PROXY}/Observation?_getpages=abc&_count=10"`);
    expect(out).toContain(`"fullUrl":"${PROXY}/Observation/1"`);
    expect(out).toContain(`"reference":"${PROXY}/Patient/1"`);
    expect(out).toContain(`${PROXY}?x`);
    expect(out).toContain('https://ehr.example.com/fhir/r4b/Patient/1');
    expect(out).toContain('https://other.example.com/fhir/r4/Patient/1');
    expect(out).toContain(String.raw`"escaped":"https:\/\/app.example.org\/fhir\/Patient\/2"`);
    expect(out).toContain(`"end":"${PROXY}"`);
    expect(out).not.toContain(`${UP}/`);
  });

  test('the same result whatever the chunking, including splits inside a URL and a multibyte char', async () => {
    const body = `${bundle}\n{"name":"José 🚑","ref":"${UP}/Patient/9"}`;
    const whole = await streamThrough([body]);
    const bytes = Buffer.from(body);
    for (const size of [1, 2, 3, 7, 13, 31, 64]) {
      const chunks: string[] = [];
      // split at byte level to cross UTF-8 sequences too
      const parts: Buffer[] = [];
      for (let i = 0; i < bytes.length; i += size) parts.push(bytes.subarray(i, i + size));
      const out = await text(Readable.from(parts).pipe(new LinkRewriter(needlesFor(UP, PROXY))));
      expect(out).toBe(whole);
      expect(chunks).toEqual([]);
    }
    expect(whole).toContain('José 🚑');
  });

  test('a base URL with non-ASCII characters is matched on its UTF-8 bytes, split anywhere', async () => {
    const up = 'https://ehr.example.com/fhir/örebro';
    const body = Buffer.from(`{"a":"${up}/Patient/1","b":"${up}x","c":"ö ${up}"}`);
    for (const size of [1, 2, 3, 5, 64]) {
      const parts: Buffer[] = [];
      for (let i = 0; i < body.length; i += size) parts.push(body.subarray(i, i + size));
      const out = await text(Readable.from(parts).pipe(new LinkRewriter(needlesFor(up, PROXY))));
      expect(out).toBe(`{"a":"${PROXY}/Patient/1","b":"${up}x","c":"ö ${PROXY}"}`);
    }
  });
});

describe('rewriteBody (a small body, whole)', () => {
  const needles = needlesFor(UP, PROXY);

  test('a body where the base occurs only JSON-escaped is rewritten', () => {
    const body = Buffer.from(String.raw`{"url":"https:\/\/ehr.example.com\/fhir\/r4\/Patient\/2","name":"José"}`);
    expect(rewriteBody(body, needles).toString()).toBe(String.raw`{"url":"https:\/\/app.example.org\/fhir\/Patient\/2","name":"José"}`);
  });

  test('a body with the base in its plain form is rewritten', () => {
    expect(rewriteBody(Buffer.from(`{"fullUrl":"${UP}/Patient/1"}`), needles).toString()).toBe(`{"fullUrl":"${PROXY}/Patient/1"}`);
  });

  test('a body where the base does not occur comes back unchanged, byte for byte', () => {
    const body = Buffer.from('{"resourceType":"Patient","id":"1","name":[{"family":"Núñez 🚑"}],"managingOrganization":{"reference":"Organization/o"}}');
    expect(rewriteBody(body, needles).equals(body)).toBe(true);
  });
});
