/**
 * readBodyAtMost (http/capped-body.ts), what discovery and the doctor read fetched documents with: the body up
 * to the limit, and nothing past it, whether the size is declared (Content-Length) or only streamed.
 */
import { readBodyAtMost } from '../../src/http/capped-body.js';

function streamed(chunks: string[]): { res: Response; pulled: () => number } {
  let pulled = 0;
  const body = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (pulled === chunks.length) return controller.close();
      controller.enqueue(new TextEncoder().encode(chunks[pulled++]!));
    },
  });
  return { res: new Response(body), pulled: () => pulled };
}

test('a body within the limit is read whole', async () => {
  expect(await readBodyAtMost(new Response('{"a":"é"}'), 100)).toBe('{"a":"é"}');
  expect(await readBodyAtMost(streamed(['ab', 'cd']).res, 4)).toBe('abcd');
  expect(await readBodyAtMost(new Response(null), 4)).toBe('');
});

test('a streamed body past the limit is undefined, and the rest is not read', async () => {
  const s = streamed(['aaaa', 'bbbb', 'cccc', 'dddd']);
  expect(await readBodyAtMost(s.res, 6)).toBeUndefined();
  expect(s.pulled()).toBeLessThan(4);
});

test('a declared Content-Length past the limit is undefined without reading', async () => {
  const s = streamed(['x']);
  const res = new Response(s.res.body, { headers: { 'content-length': '1000' } });
  expect(await readBodyAtMost(res, 10)).toBeUndefined();
  expect(s.pulled()).toBe(0);
});
