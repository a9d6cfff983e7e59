/**
 * Reading a response body we fetched (a SMART configuration, a JWKS) up to a size, so that a server cannot make us
 * buffer an unbounded answer: past `maxBytes` the rest is not read and the stream is cancelled.
 */

/** The body as UTF-8 text, or undefined when it is larger than `maxBytes` (a Content-Length that says so included). */
export async function readBodyAtMost(res: Response, maxBytes: number): Promise<string | undefined> {
  if (Number(res.headers.get('content-length') ?? '0') > maxBytes) {
    await res.body?.cancel();
    return undefined;
  }
  if (!res.body) return '';
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > maxBytes) {
      await reader.cancel();
      return undefined;
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks).toString('utf8');
}
