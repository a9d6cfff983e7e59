/**
 * Rewrites absolute URLs that point at the upstream FHIR base (Bundle.link, fullUrl, references) to the
 * proxy's URL while the body streams through: constant memory, whatever the body size. A match must be
 * followed by a URL boundary (`/ ? # " ' < \` or the end) so `…/r4` never rewrites `…/r4b`. JSON's escaped
 * form (`https:\/\/host\/r4`) is rewritten too.
 */
import { Transform, type TransformCallback } from 'node:stream';
import { StringDecoder } from 'node:string_decoder';

const BOUNDARY = new Set(['/', '?', '#', '"', "'", '<', '\\', ',', ' ', '\n', '\r', '\t', '}', ']']);

interface Needle {
  from: string;
  to: string;
}

export function rewriteText(text: string, needles: readonly Needle[], final: boolean): { out: string; carry: string } {
  // Find the earliest position from which we cannot decide yet (a possible match running past the end).
  let out = '';
  let i = 0;
  let carryFrom = text.length;
  // Each needle's next occurrence at or after i, found once and reused until passed: a needle that does not
  // occur (the JSON-escaped form, usually) is scanned for once per chunk, not once per match.
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
    if (after >= text.length || BOUNDARY.has(text[after]!)) out += needle.to;
    else out += needle.from;
    i = after;
  }
  if (carryFrom === text.length && !final) {
    // keep a tail that could be the start of a needle
    const longest = Math.max(...needles.map((n) => n.from.length));
    carryFrom = Math.max(i, text.length - longest + 1);
    for (let k = carryFrom; k < text.length; k++) {
      const tail = text.slice(k);
      if (needles.some((n) => n.from.startsWith(tail))) {
        carryFrom = k;
        break;
      }
      if (k === text.length - 1) carryFrom = text.length;
    }
  }
  if (carryFrom < i) carryFrom = i;
  out += text.slice(i, carryFrom);
  return { out, carry: text.slice(carryFrom) };
}

export function needlesFor(upstreamBase: string, proxyBase: string): Needle[] {
  const from = upstreamBase.replace(/\/+$/, '');
  const to = proxyBase.replace(/\/+$/, '');
  const esc = (s: string) => s.replace(/\//g, '\\/');
  return from === esc(from) ? [{ from, to }] : [{ from, to }, { from: esc(from), to: esc(to) }];
}

export class LinkRewriter extends Transform {
  private readonly decoder = new StringDecoder('utf8');
  private carry = '';
  constructor(private readonly needles: readonly Needle[]) {
    super();
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    const { out, carry } = rewriteText(this.carry + this.decoder.write(chunk), this.needles, false);
    this.carry = carry;
    if (out) this.push(out, 'utf8');
    cb();
  }
  override _flush(cb: TransformCallback): void {
    const { out } = rewriteText(this.carry + this.decoder.end(), this.needles, true);
    if (out) this.push(out, 'utf8');
    cb();
  }
}

/** Rewrites a single header value (Location, Content-Location). */
export function rewriteUrlValue(value: string, upstreamBase: string, proxyBase: string): string {
  return rewriteText(value, needlesFor(upstreamBase, proxyBase), true).out;
}

const REWRITABLE = /^(application\/(fhir\+)?(json|xml)|application\/(x-)?(fhir\+)?ndjson|text\/(xml|plain|html))/i;
export function isRewritable(contentType: string | undefined): boolean {
  return !!contentType && REWRITABLE.test(contentType);
}
