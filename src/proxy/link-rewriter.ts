/**
 * Rewrites absolute URLs that point at the upstream FHIR base (Bundle.link, fullUrl, references) to the
 * proxy's URL while the body streams through: constant memory, whatever the body size. A match must be
 * followed by a URL boundary (`/ ? # " ' < \` and the like, or the end) so `…/r4` never rewrites `…/r4b`. JSON's
 * escaped form (`https:\/\/host\/r4`) is rewritten too.
 * It works on bytes: the needles are the UTF-8 bytes of the URLs, a UTF-8 needle can only match at a character
 * boundary, and the boundary characters are ASCII, so the body is never decoded as UTF-8 and a multibyte character
 * split between chunks needs no care (the search reads the bytes as latin1, one character per byte: rewriteText).
 */
import { LRUCache } from 'lru-cache';

/** Bytes that may follow a URL prefix for it to be rewritten. */
const BOUNDARY = new Uint8Array(256);
for (const c of ['/', '?', '#', '"', "'", '<', '\\', ',', ' ', '\n', '\r', '\t', '}', ']']) BOUNDARY[c.charCodeAt(0)] = 1;

/** A URL prefix as UTF-8 bytes (for the whole-body check), and it and its replacement as those bytes read as latin1 (one character per byte). */
export interface Needle {
  from: Buffer;
  fromText: string;
  toText: string;
  /** Whether it holds a backslash (the JSON-escaped form does): it can only occur in a chunk that has one. */
  backslash: boolean;
}

/**
 * Rewrites what can be decided in `text`, a body's bytes read as latin1 (one character per byte): `out`, the rewritten
 * text up to `carryFrom` (undefined when nothing in it was rewritten), and `carryFrom`, where the tail that cannot
 * be decided yet starts (a possible match running past the end, or a match whose next byte has not arrived), to put
 * before the next chunk. With `final`, everything is decided and carryFrom is the text's length.
 *
 * Since every byte is one character, a position in the text is the same position in the bytes, and the output
 * turned back into bytes as latin1 is byte for byte what it would be spliced as bytes. A string search and a slice
 * cost far less per match than a Buffer search and view (a Bundle or an NDJSON file has a match or two in every
 * entry).
 */
function rewriteText(text: string, needles: readonly Needle[], final: boolean): { out: string | undefined; carryFrom: number } {
  let out = '';
  let rewritten = false;
  /** Where the text not yet in `out` starts. */
  let emitted = 0;
  let i = 0;
  let carryFrom = text.length;
  // The needles that occur in this chunk, with each one's next occurrence at or after i, found once and reused until
  // passed. Usually one needle occurs, and the loop below then has no choice to make between needles at each match,
  // which is most of its work. The JSON-escaped form seldom occurs, and looking for it costs a scan of the whole
  // chunk; it holds a backslash, so a chunk without one (a search for one byte, some twenty times faster) is not
  // scanned for it.
  const present: Needle[] = [];
  const next: number[] = [];
  let backslash: boolean | undefined;
  for (const n of needles) {
    if (n.backslash && !(backslash ??= text.includes('\\'))) continue;
    const j = text.indexOf(n.fromText);
    if (j === -1) continue;
    present.push(n);
    next.push(j);
  }
  for (;;) {
    let best = -1;
    let needle: Needle | undefined;
    for (let k = 0; k < present.length; k++) {
      if (next[k] !== -1 && next[k]! < i) next[k] = text.indexOf(present[k]!.fromText, i);
      const j = next[k]!;
      if (j !== -1 && (best === -1 || j < best)) {
        best = j;
        needle = present[k];
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
  if (carryFrom === text.length && !final) carryFrom = needleStartAtEnd(text, i, needles);
  return { out: rewritten ? out + text.slice(emitted, carryFrom) : undefined, carryFrom };
}

/**
 * Where the longest tail of `text`, at or after `from`, that could be the start of a needle begins (text.length:
 * none). Called for every chunk, most of them small pieces of a chunked body: a position is only looked at further
 * when its character starts a needle (no string is made for the others).
 */
function needleStartAtEnd(text: string, from: number, needles: readonly Needle[]): number {
  const longest = Math.max(...needles.map((n) => n.fromText.length));
  for (let k = Math.max(from, text.length - longest + 1); k < text.length; k++) {
    const c = text.charCodeAt(k);
    for (const n of needles) {
      if (n.fromText.charCodeAt(0) === c && n.fromText.startsWith(text.slice(k))) return k;
    }
  }
  return text.length;
}

/**
 * Rewrites a whole body at once. A body in which no needle occurs (most single-resource reads: their references
 * are relative) is returned as it is, found by a byte search.
 */
export function rewriteBody(body: Buffer, needles: readonly Needle[]): Buffer {
  if (!needles.some((n) => body.includes(n.from))) return body;
  const { out } = rewriteText(body.toString('latin1'), needles, true);
  return out === undefined ? body : Buffer.from(out, 'latin1');
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
    const fromText = from.toString('latin1');
    return { from, fromText, toText: Buffer.from(t!, 'utf8').toString('latin1'), backslash: fromText.includes('\\') };
  });
}

/**
 * A body rewritten as it streams, in constant memory: what can be decided is handed on at once, and the few bytes
 * that cannot yet (a possible needle running past the end of what has arrived) wait for the next chunks. The proxy
 * calls it from the upstream body's callbacks (upstream-client.ts, `pipeTo`), with no stream in between, once per
 * turn of the event loop with the chunks that turn brought.
 */
export class StreamingRewrite {
  /** The undecided tail, as latin1 text: a few bytes (it may share the memory of the text it was cut from until the next call). */
  private carry = '';
  constructor(private readonly needles: readonly Needle[]) {}

  /**
   * The rewritten bytes that `chunks`, the body's next chunks in order, decide (possibly none): one search and one
   * buffer for all of them.
   */
  chunks(chunks: readonly Buffer[]): Buffer {
    const carried = this.carry;
    let text = carried;
    for (const c of chunks) text += c.toString('latin1');
    const { out, carryFrom } = rewriteText(text, this.needles, false);
    this.carry = text.slice(carryFrom);
    if (out !== undefined) return Buffer.from(out, 'latin1');
    // nothing rewritten: a lone chunk with nothing carried before it is passed on as it is
    if (carried === '' && chunks.length === 1) return chunks[0]!.subarray(0, carryFrom);
    return Buffer.from(text.slice(0, carryFrom), 'latin1');
  }

  /** What is left at the end of the body, rewritten. */
  end(): Buffer {
    const rest = this.carry;
    this.carry = '';
    return rest === '' ? EMPTY : Buffer.from(rewriteText(rest, this.needles, true).out ?? rest, 'latin1');
  }
}

const EMPTY = Buffer.alloc(0);

const REWRITABLE = /^(application\/(fhir\+)?(json|xml)|application\/(x-)?(fhir\+)?ndjson|text\/(xml|plain|html))/i;
export function isRewritable(contentType: string | undefined): boolean {
  return !!contentType && REWRITABLE.test(contentType);
}
