import fc from 'fast-check';
import { StreamingRewrite, needlesFor, rewriteBody, type Needle } from '../../src/proxy/link-rewriter.js';

const UP = 'https://ehr.example.com/fhir/r4';
const PROXY = 'https://app.example.org/fhir';

/**
 * A body through StreamingRewrite as the proxy streams one: its chunks in order, in turns (`turns`, repeated: how many
 * chunks each turn brings; one each by default); then what is left at its end.
 */
function streamed(chunks: Buffer[], needles: readonly Needle[], turns: readonly number[] = [1]): string {
  const rewrite = new StreamingRewrite(needles);
  const out: Buffer[] = [];
  for (let i = 0, k = 0; i < chunks.length; k++) {
    const n = turns[k % turns.length]!;
    out.push(rewrite.chunks(chunks.slice(i, i + n)));
    i += n;
  }
  return Buffer.concat([...out, rewrite.end()]).toString();
}

function streamThrough(chunks: string[]): string {
  return streamed(chunks.map((c) => Buffer.from(c)), needlesFor(UP, PROXY));
}

describe('StreamingRewrite', () => {
  const bundle = JSON.stringify({
    resourceType: 'Bundle',
    link: [{ relation: 'next', url: `${UP}/Observation?_getpages=abc&_count=10` }, { relation: 'self', url: `${UP}?x` }],
    entry: [{ fullUrl: `${UP}/Observation/1`, resource: { subject: { reference: `${UP}/Patient/1` } } }],
    other: 'https://ehr.example.com/fhir/r4b/Patient/1',
    elsewhere: 'https://other.example.com/fhir/r4/Patient/1',
    escaped: 'ESCAPED',
    end: UP,
  }).replace('ESCAPED', String.raw`https:\/\/ehr.example.com\/fhir\/r4\/Patient\/2`);

  test('rewrites every upstream URL and nothing else', () => {
    const out = streamThrough([bundle]);
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

  test('the same result whatever the chunking, including splits inside a URL and a multibyte char', () => {
    const body = `${bundle}\n{"name":"José 🚑","ref":"${UP}/Patient/9"}`;
    const whole = streamThrough([body]);
    const bytes = Buffer.from(body);
    for (const size of [1, 2, 3, 7, 13, 31, 64]) {
      // split at byte level to cross UTF-8 sequences too
      const parts: Buffer[] = [];
      for (let i = 0; i < bytes.length; i += size) parts.push(bytes.subarray(i, i + size));
      const out = streamed(parts, needlesFor(UP, PROXY));
      expect(out).toBe(whole);
    }
    expect(whole).toContain('José 🚑');
  });

  test("a turn's chunks come out as one buffer, the same bytes as one chunk at a time; a lone chunk with nothing to rewrite is passed on as it is", () => {
    const needles = needlesFor(UP, PROXY);
    const parts = [`{"a":"${UP.slice(0, 10)}`, `${UP.slice(10)}/Patient/1","b":"x`, `","c":"${UP}`, '"}'].map((p) => Buffer.from(p));
    const rewrite = new StreamingRewrite(needles);
    const whole = Buffer.concat([rewrite.chunks(parts), rewrite.end()]).toString();
    expect(whole).toBe(`{"a":"${PROXY}/Patient/1","b":"x","c":"${PROXY}"}`);
    expect(streamed(parts, needles)).toBe(whole);
    const plain = Buffer.from('{"resourceType":"Patient","id":"1"}');
    const passed = new StreamingRewrite(needles).chunks([plain]);
    expect(passed.buffer).toBe(plain.buffer);
    expect(passed.byteOffset).toBe(plain.byteOffset);
    expect(passed.toString()).toBe(plain.toString());
  });

  test('a base URL with non-ASCII characters is matched on its UTF-8 bytes, split anywhere', () => {
    const up = 'https://ehr.example.com/fhir/örebro';
    const body = Buffer.from(`{"a":"${up}/Patient/1","b":"${up}x","c":"ö ${up}"}`);
    for (const size of [1, 2, 3, 5, 64]) {
      const parts: Buffer[] = [];
      for (let i = 0; i < body.length; i += size) parts.push(body.subarray(i, i + size));
      const out = streamed(parts, needlesFor(up, PROXY));
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

describe('the rewriter against a plain reference (random bodies, random chunking)', () => {
  // The reference: a regular expression over the whole body decoded as UTF-8, for each base in its plain and its
  // JSON-escaped form, rewritten where a URL boundary (or the end) follows.
  const BOUNDARY_CLASS = String.raw`[/?#"'<\\, \n\r\t}\]]`;
  const escapeRe = (s: string) => s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
  const jsonEscaped = (s: string) => s.replace(/\//g, '\\/');
  function reference(body: string, up: string, proxy: string): string {
    const pairs: [string, string][] = [[up, proxy], [jsonEscaped(up), jsonEscaped(proxy)]];
    const re = new RegExp(`(?:${pairs.map(([f]) => escapeRe(f)).join('|')})(?=${BOUNDARY_CLASS}|$)`, 'g');
    return body.replace(re, (m) => pairs.find(([f]) => f === m)![1]);
  }

  const ups = ['https://ehr.example.com/fhir/r4', 'https://ehr.example.com/fhir/örebro', 'http://127.0.0.1:8080/fhir'];
  const piece = (up: string) => fc.oneof(
    fc.constantFrom(up, jsonEscaped(up), `${up}/Patient/1`, `${up}b`, `${up}?x=1`, up.slice(0, 12), up.slice(5), '"', '/', '\\', ',', '\n', '}', ']', 'é', '🚑', 'ö', ' ', 'x', '{"a":"'),
    fc.string({ maxLength: 6 }),
  );

  test('streamed in chunks of any size, one or several a turn, or rewritten whole: the same bytes as the reference', () => {
    fc.assert(fc.property(
      fc.constantFrom(...ups).chain((up) => fc.tuple(
        fc.constant(up), fc.array(piece(up), { maxLength: 40 }), fc.array(fc.integer({ min: 1, max: 40 }), { minLength: 1, maxLength: 12 }),
        fc.array(fc.integer({ min: 1, max: 4 }), { minLength: 1, maxLength: 6 }),
      )),
      ([up, pieces, sizes, turns]) => {
        const body = pieces.join('');
        const expected = reference(body, up, PROXY);
        const bytes = Buffer.from(body);
        const chunks: Buffer[] = [];
        for (let i = 0, k = 0; i < bytes.length; i += sizes[k++ % sizes.length]!) chunks.push(bytes.subarray(i, i + sizes[k % sizes.length]!));
        expect(streamed(chunks, needlesFor(up, PROXY))).toBe(expected);
        expect(streamed(chunks, needlesFor(up, PROXY), turns)).toBe(expected);
        expect(rewriteBody(bytes, needlesFor(up, PROXY)).toString()).toBe(expected);
      },
    ), { numRuns: 400 });
  });
});
