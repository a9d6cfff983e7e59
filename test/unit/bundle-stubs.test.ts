/**
 * The server bundle's stand-in for iconv-lite (scripts/bundle-stubs/iconv-lite.cjs), against the real iconv-lite
 * on what it keeps: the same text for UTF-8, UTF-16LE, Latin-1 and ASCII, byte-order mark dropped, multibyte
 * characters split between chunks; any other charset refused as body-parser expects (a typed error, never a crash).
 */
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
type Iconv = {
  encodingExists(e: string): boolean;
  decode(b: Buffer, e: string): string;
  getDecoder(e: string): { write(b: Buffer): string; end(): string | undefined };
};
const stub = require('../../scripts/bundle-stubs/iconv-lite.cjs') as Iconv;
const real = require('iconv-lite') as Iconv;

const text = '{"name":"José Ñúñez","city":"Zürich"}';
const bodies: [string, Buffer][] = [
  ['utf-8', Buffer.from(text)],
  ['UTF-8', Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(text)])],
  ['utf-16le', Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(text, 'utf16le')])],
  ['iso-8859-1', Buffer.from(text, 'latin1')],
  ['us-ascii', Buffer.from('{"a":1}')],
];

test.each(bodies)('%s: the same text as iconv-lite, whole and split byte by byte', (charset, body) => {
  expect(stub.encodingExists(charset)).toBe(true);
  expect(stub.decode(body, charset)).toBe(real.decode(body, charset));
  const decoder = stub.getDecoder(charset);
  let out = '';
  for (let i = 0; i < body.length; i++) out += decoder.write(body.subarray(i, i + 1));
  out += decoder.end() ?? '';
  expect(out).toBe(real.decode(body, charset));
});

test('another charset: encodingExists is false, and decoding throws a typed charset error', () => {
  for (const charset of ['utf-32', 'shift_jis', 'utf-16be', '__proto__', 'constructor']) {
    expect([charset, stub.encodingExists(charset)]).toEqual([charset, false]);
    expect(() => stub.decode(Buffer.from('x'), charset)).toThrow(expect.objectContaining({ type: 'charset.unsupported', charset }));
    expect(() => stub.getDecoder(charset)).toThrow(/unsupported charset/);
  }
});
