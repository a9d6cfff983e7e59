/**
 * Rewrites absolute URLs that point at the upstream FHIR base (Bundle.link, fullUrl, references) to the
 * proxy's URL while the body streams through: constant memory, whatever the body size. A match must be
 * followed by a URL boundary (`/ ? # " ' < \` and the like, or the end) so `…/r4` never rewrites `…/r4b`. JSON's
 * escaped form (`https:\/\/host\/r4`) is rewritten too.
 * It works on bytes, read as latin1 (one character per byte, the cheapest conversion V8 has, and exact both
 * ways): a UTF-8 needle can only match at a character boundary, and the boundary characters are ASCII, so the
 * body is never decoded and a multibyte character split between chunks needs no care.
 */
import { Transform, type TransformCallback } from 'node:stream';
import { LRUCache } from 'lru-cache';

const BOUNDARY = new Set(['/', '?', '#', '"', "'", '<', '\\', ',', ' ', '\n', '\r', '\t', '}', ']']);

/** A URL prefix and its replacement, as latin1 strings of their UTF-8 bytes. */
export interface Needle {
  from: string;
  to: string;
}

/**
 * Rewrites what can be decided in `text` (bytes as latin1); `carry` is the tail that cannot be yet (a possible
 * match running past the end, or a match whose next byte has not arrived), to prepend to the next chunk.
 * With `final`, everything is decided and `carry` is empty.
 */
export function rewriteText(text: string, needles: readonly Needle[], final: boolean): { out: string; carry: string } {
  let out = '';
  let i = 0;
  let carryFrom = text.length;
  // Each needle's next occurrence at or after i, found once and reused until passed: a needle that does not
  // occur (the JSON-escaped form, usually) is searched for once per chunk, not once per match.
  const next = needles.map(() => -2);
  for (;;) {
    let best = -1;
    let needle: Needle | undefined;
    for (let k = 0; k < needles.length; k++) {
      if (next[k] !== -1 && next[k]! < i) next[k] = text.indexOf(needles[k]!.from, i);
      const j = next[k]!;
      if (j !== -1 && (best === -1 || j < best)) {
        best = j;
        needle = needles[k];
      }
    }
    if (best === -1 || !needle) break;
    const after = best + needle.from.length;
    if (after >= text.length && !final) {
      carryFrom = best;
      break;
    }
    out += text.slice(i, best);
    out += after >= text.length || BOUNDARY.has(text[after]!) ? needle.to : needle.from;
    i = after;
  }
  if (carryFrom === text.length && !final) {
    // keep the longest tail that could be the start of a needle
    const longest = Math.max(...needles.map((n) => n.from.length));
    for (let k = Math.max(i, text.length - longest + 1); k < text.length; k++) {
      const tail = text.slice(k);
      if (needles.some((n) => n.from.startsWith(tail))) {
        carryFrom = k;
        break;
      }
    }
  }
  out += text.slice(i, carryFrom);
  return { out, carry: text.slice(carryFrom) };
}

/**
 * Rewrites a whole body at once. A body in which no needle occurs (most single-resource reads: their references
 * are relative) is returned as it is, found by a byte search, without converting it to a string and back.
 */
export function rewriteBody(body: Buffer, needles: readonly Needle[]): Buffer {
  if (!needles.some((n) => body.includes(n.from, 0, 'latin1'))) return body;
  return Buffer.from(rewriteText(body.toString('latin1'), needles, true).out, 'latin1');
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
  const bytes = (s: string) => Buffer.from(s, 'utf8').toString('latin1');
  const pairs = from === esc(from) ? [[from, to]] : [[from, to], [esc(from), esc(to)]];
  return pairs.map(([f, t]) => ({ from: bytes(f!), to: bytes(t!) }));
}

export class LinkRewriter extends Transform {
  private carry = '';
  constructor(private readonly needles: readonly Needle[]) {
    super();
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    const { out, carry } = rewriteText(this.carry + chunk.toString('latin1'), this.needles, false);
    this.carry = carry;
    if (out) this.push(Buffer.from(out, 'latin1'));
    cb();
  }
  override _flush(cb: TransformCallback): void {
    const { out } = rewriteText(this.carry, this.needles, true);
    if (out) this.push(Buffer.from(out, 'latin1'));
    cb();
  }
}

const REWRITABLE = /^(application\/(fhir\+)?(json|xml)|application\/(x-)?(fhir\+)?ndjson|text\/(xml|plain|html))/i;
export function isRewritable(contentType: string | undefined): boolean {
  return !!contentType && REWRITABLE.test(contentType);
}
