/**
 * Rewrites absolute URLs that point at the upstream FHIR base (Bundle.link, fullUrl, references) to the
 * proxy's URL while the body streams through: constant memory, whatever the body size. A match must be
 * followed by a URL boundary (`/ ? # " ' < \` and the like, or the end) so `…/r4` never rewrites `…/r4b`. JSON's
 * escaped form (`https:\/\/host\/r4`) is rewritten too.
 * It works on bytes: the needles are the UTF-8 bytes of the URLs, a UTF-8 needle can only match at a character
 * boundary, and the boundary characters are ASCII, so the body is never decoded and a multibyte character split
 * between chunks needs no care. What passes unchanged is never copied but once, into the chunk pushed on.
 */
import { Transform, type TransformCallback } from 'node:stream';
import { LRUCache } from 'lru-cache';

/** Bytes that may follow a URL prefix for it to be rewritten. */
const BOUNDARY = new Uint8Array(256);
for (const c of ['/', '?', '#', '"', "'", '<', '\\', ',', ' ', '\n', '\r', '\t', '}', ']']) BOUNDARY[c.charCodeAt(0)] = 1;

/** A URL prefix and its replacement, as UTF-8 bytes. */
export interface Needle {
  from: Buffer;
  to: Buffer;
}

/**
 * Rewrites what can be decided in `data`: the parts of the output, and `carry`, the tail that cannot be decided yet
 * (a possible match running past the end, or a match whose next byte has not arrived), to put before the next
 * chunk. With `final`, everything is decided and `carry` is empty.
 */
function rewriteBytes(data: Buffer, needles: readonly Needle[], final: boolean): { parts: Buffer[]; carry: Buffer } {
  const parts: Buffer[] = [];
  let i = 0;
  let carryFrom = data.length;
  // Each needle's next occurrence at or after i, found once and reused until passed: a needle that does not
  // occur (the JSON-escaped form, usually) is searched for once per chunk, not once per match.
  const next = needles.map(() => -2);
  for (;;) {
    let best = -1;
    let needle: Needle | undefined;
    for (let k = 0; k < needles.length; k++) {
      if (next[k] !== -1 && next[k]! < i) next[k] = data.indexOf(needles[k]!.from, i);
      const j = next[k]!;
      if (j !== -1 && (best === -1 || j < best)) {
        best = j;
        needle = needles[k];
      }
    }
    if (best === -1 || !needle) break;
    const after = best + needle.from.length;
    if (after >= data.length && !final) {
      carryFrom = best;
      break;
    }
    if (best > i) parts.push(data.subarray(i, best));
    parts.push(after >= data.length || BOUNDARY[data[after]!] === 1 ? needle.to : needle.from);
    i = after;
  }
  if (carryFrom === data.length && !final) {
    // keep the longest tail that could be the start of a needle
    const longest = Math.max(...needles.map((n) => n.from.length));
    for (let k = Math.max(i, data.length - longest + 1); k < data.length; k++) {
      const tail = data.subarray(k);
      if (needles.some((n) => n.from.subarray(0, tail.length).equals(tail))) {
        carryFrom = k;
        break;
      }
    }
  }
  if (carryFrom > i) parts.push(data.subarray(i, carryFrom));
  return { parts, carry: data.subarray(carryFrom) };
}

/** The parts as one chunk (the one copy of the bytes that pass unchanged). */
const joined = (parts: Buffer[]): Buffer => (parts.length === 1 ? parts[0]! : Buffer.concat(parts));

/**
 * Rewrites a whole body at once. A body in which no needle occurs (most single-resource reads: their references
 * are relative) is returned as it is, found by a byte search.
 */
export function rewriteBody(body: Buffer, needles: readonly Needle[]): Buffer {
  if (!needles.some((n) => body.includes(n.from))) return body;
  return joined(rewriteBytes(body, needles, true).parts);
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
  return pairs.map(([f, t]) => ({ from: Buffer.from(f!, 'utf8'), to: Buffer.from(t!, 'utf8') }));
}

export class LinkRewriter extends Transform {
  private carry: Buffer | undefined;
  constructor(private readonly needles: readonly Needle[]) {
    super();
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    const { parts, carry } = rewriteBytes(this.carry?.length ? Buffer.concat([this.carry, chunk]) : chunk, this.needles, false);
    // the carry is kept apart from the chunk it came from (a few bytes), never as a view holding the whole chunk
    this.carry = carry.length ? Buffer.from(carry) : undefined;
    if (parts.length) this.push(joined(parts));
    cb();
  }
  override _flush(cb: TransformCallback): void {
    if (this.carry?.length) this.push(joined(rewriteBytes(this.carry, this.needles, true).parts));
    cb();
  }
}

const REWRITABLE = /^(application\/(fhir\+)?(json|xml)|application\/(x-)?(fhir\+)?ndjson|text\/(xml|plain|html))/i;
export function isRewritable(contentType: string | undefined): boolean {
  return !!contentType && REWRITABLE.test(contentType);
}
