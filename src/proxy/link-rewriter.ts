/**
 * Rewrites absolute URLs that point at the upstream FHIR base (Bundle.link, fullUrl, references) to the
 * proxy's URL while the body streams through: constant memory, whatever the body size. A match must be
 * followed by a URL boundary (`/ ? # " ' < \` and the like, or the end) so `…/r4` never rewrites `…/r4b`. JSON's
 * escaped form (`https:\/\/host\/r4`) is rewritten too.
 * It works on bytes: the needles are the UTF-8 bytes of the URLs, a UTF-8 needle can only match at a character
 * boundary, and the boundary characters are ASCII, so the body is never decoded as UTF-8 and a multibyte character
 * split between chunks needs no care (the search reads the bytes as latin1, one character per byte: rewriteBytes).
 */
import { Transform, type TransformCallback } from 'node:stream';
import { LRUCache } from 'lru-cache';

/** Bytes that may follow a URL prefix for it to be rewritten. */
const BOUNDARY = new Uint8Array(256);
for (const c of ['/', '?', '#', '"', "'", '<', '\\', ',', ' ', '\n', '\r', '\t', '}', ']']) BOUNDARY[c.charCodeAt(0)] = 1;

/** A URL prefix as UTF-8 bytes (for the whole-body check), and it and its replacement as those bytes read as latin1 (one character per byte). */
export interface Needle {
  from: Buffer;
  fromText: string;
  toText: string;
}

/**
 * Rewrites what can be decided in `data`: the output, and `carry`, the tail that cannot be decided yet (a possible
 * match running past the end, or a match whose next byte has not arrived), to put before the next chunk. With
 * `final`, everything is decided and `carry` is empty.
 *
 * The search runs on the chunk read as latin1 text, where every byte is one character, so a position in the text is
 * the same position in the bytes, and the output turned back into bytes as latin1 is byte for byte what it would be
 * spliced as bytes. A string search and a slice cost far less per match than a Buffer search and view (a Bundle or
 * an NDJSON file has a match or two in every entry); a chunk with no match in it is passed on as it is.
 */
function rewriteBytes(data: Buffer, needles: readonly Needle[], final: boolean): { out: Buffer; carry: Buffer } {
  const text = data.toString('latin1');
  let out = '';
  let rewritten = false;
  /** Where the text not yet in `out` starts. */
  let emitted = 0;
  let i = 0;
  let carryFrom = text.length;
  // Each needle's next occurrence at or after i, found once and reused until passed: a needle that does not
  // occur (the JSON-escaped form, usually) is searched for once per chunk, not once per match.
  const next = needles.map(() => -2);
  for (;;) {
    let best = -1;
    let needle: Needle | undefined;
    for (let k = 0; k < needles.length; k++) {
      if (next[k] !== -1 && next[k]! < i) next[k] = text.indexOf(needles[k]!.fromText, i);
      const j = next[k]!;
      if (j !== -1 && (best === -1 || j < best)) {
        best = j;
        needle = needles[k];
      }
    }
    if (best === -1 || !needle) break;
    const after = best + needle.fromText.length;
    if (after >= text.length && !final) {
      carryFrom = best;
      break;
    }
    if (after >= text.length || BOUNDARY[text.charCodeAt(after)] === 1) {
      out += text.slice(emitted, best) + needle.toText;
      emitted = after;
      rewritten = true;
    }
    i = after;
  }
  if (carryFrom === text.length && !final) {
    // keep the longest tail that could be the start of a needle
    const longest = Math.max(...needles.map((n) => n.fromText.length));
    for (let k = Math.max(i, text.length - longest + 1); k < text.length; k++) {
      const tail = text.slice(k);
      if (needles.some((n) => n.fromText.startsWith(tail))) {
        carryFrom = k;
        break;
      }
    }
  }
  const carry = data.subarray(carryFrom);
  if (!rewritten) return { out: data.subarray(0, carryFrom), carry };
  return { out: Buffer.from(out + text.slice(emitted, carryFrom), 'latin1'), carry };
}

/**
 * Rewrites a whole body at once. A body in which no needle occurs (most single-resource reads: their references
 * are relative) is returned as it is, found by a byte search.
 */
export function rewriteBody(body: Buffer, needles: readonly Needle[]): Buffer {
  if (!needles.some((n) => body.includes(n.from))) return body;
  return rewriteBytes(body, needles, true).out;
}

/** Needles by FHIR base and proxy base: a bounded cache, read per proxied call. */
const needleCache = new LRUCache<string, readonly Needle[]>({ max: 1000 });

export function needlesFor(upstreamBase: string, proxyBase: string): readonly Needle[] {
  const key = `${upstreamBase} ${proxyBase}`;
  let needles = needleCache.get(key);
  if (!needles) {
    needles = Object.freeze(makeNeedles(upstreamBase, proxyBase));
    needleCache.set(key, needles);
  }
  return needles;
}

function makeNeedles(upstreamBase: string, proxyBase: string): Needle[] {
  const from = upstreamBase.replace(/\/+$/, '');
  const to = proxyBase.replace(/\/+$/, '');
  const esc = (s: string) => s.replace(/\//g, '\\/');
  const pairs = from === esc(from) ? [[from, to]] : [[from, to], [esc(from), esc(to)]];
  return pairs.map(([f, t]) => {
    const from = Buffer.from(f!, 'utf8');
    return { from, fromText: from.toString('latin1'), toText: Buffer.from(t!, 'utf8').toString('latin1') };
  });
}

export class LinkRewriter extends Transform {
  private carry: Buffer | undefined;
  constructor(private readonly needles: readonly Needle[]) {
    super();
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    const { out, carry } = rewriteBytes(this.carry?.length ? Buffer.concat([this.carry, chunk]) : chunk, this.needles, false);
    // the carry is kept apart from the chunk it came from (a few bytes), never as a view holding the whole chunk
    this.carry = carry.length ? Buffer.from(carry) : undefined;
    if (out.length) this.push(out);
    cb();
  }
  override _flush(cb: TransformCallback): void {
    if (this.carry?.length) this.push(rewriteBytes(this.carry, this.needles, true).out);
    cb();
  }
}

const REWRITABLE = /^(application\/(fhir\+)?(json|xml)|application\/(x-)?(fhir\+)?ndjson|text\/(xml|plain|html))/i;
export function isRewritable(contentType: string | undefined): boolean {
  return !!contentType && REWRITABLE.test(contentType);
}
