/**
 * UpstreamBody.pipeTo: a response body from undici's callbacks into the browser's response, in order, with
 * back-pressure. Through a map (link rewriting), the chunks of one turn of the event loop are mapped together and
 * written once; what arrives in a later turn is a later write; the end, a failure or a browser gone are each handled
 * with nothing of the turn lost or written late. Here undici's controller is a recording stand-in and the browser's
 * response a real Writable.
 */
import { Writable } from 'node:stream';
import type { Dispatcher } from 'undici';
import { UpstreamBody, type ChunkMap } from '../../src/proxy/upstream-client.js';

function controller() {
  const calls: string[] = [];
  const c = { pause: () => calls.push('pause'), resume: () => calls.push('resume'), abort: () => calls.push('abort') };
  return { calls, controller: c as unknown as Dispatcher.DispatchController };
}

/** A Writable that records each write; full after `highWaterMark` bytes until the test lets it drain. */
function sink(highWaterMark = 1 << 20) {
  const writes: string[] = [];
  const pending: (() => void)[] = [];
  let held = false;
  const dest = new Writable({
    highWaterMark,
    write(chunk: Buffer, _enc, cb) {
      writes.push(chunk.toString());
      if (held) pending.push(cb);
      else cb();
    },
  });
  let ended = false;
  dest.on('finish', () => (ended = true));
  return {
    dest, writes, ended: () => ended,
    hold: () => (held = true),
    release: () => { held = false; for (const cb of pending.splice(0)) cb(); },
  };
}

/** A map that marks what it was given, one call per turn: `[a|b]` for chunks a and b; `<end>` at the end. */
function marker(): ChunkMap & { calls: string[][] } {
  const calls: string[][] = [];
  return {
    calls,
    chunks: (data) => { calls.push(data.map((d) => d.toString())); return Buffer.from(`[${data.join('|')}]`); },
    end: () => Buffer.from('<end>'),
  };
}

/** A body piped into a recording response: through a marking map unless `map` is false. */
function piped({ map = true, highWaterMark }: { map?: boolean; highWaterMark?: number } = {}) {
  const { controller: ctl, calls } = controller();
  const body = new UpstreamBody(ctl);
  const out = sink(highWaterMark);
  const marking = marker();
  const errors: Error[] = [];
  body.pipeTo(out.dest, (e) => errors.push(e), map ? marking : undefined);
  return { body, out, map: marking, calls, errors };
}

const turn = () => new Promise<void>((r) => setImmediate(r));
const b = (s: string) => Buffer.from(s);

test("through a map, one turn's chunks are mapped together and written once; a later turn's are a later write", async () => {
  const { body, out, map } = piped();
  body.push(b('a'));
  body.push(b('b'));
  body.push(b('c'));
  expect(map.calls).toEqual([]); // not before the turn's callbacks are done
  await turn();
  body.push(b('d'));
  await turn();
  expect(map.calls).toEqual([['a', 'b', 'c'], ['d']]);
  expect(out.writes).toEqual(['[a|b|c]', '[d]']);
});

test('chunks held before the consumer attached go through the map together with that turn', async () => {
  const { controller: ctl } = controller();
  const body = new UpstreamBody(ctl);
  body.push(b('a'));
  body.push(b('b'));
  const out = sink();
  const map = marker();
  body.pipeTo(out.dest, () => undefined, map);
  body.push(b('c'));
  await turn();
  expect(out.writes).toEqual(['[a|b|c]']);
});

test('an end in the same turn as chunks: they go through the map first, then what it holds at the end, then the end', async () => {
  const { body, out, map } = piped();
  body.push(b('a'));
  body.push(b('b'));
  body.end();
  await turn();
  expect(out.writes).toEqual(['[a|b]', '<end>']);
  expect(map.calls).toEqual([['a', 'b']]); // once: the turn's own flush found nothing left
  expect(out.ended()).toBe(true);
});

test('without a map, each chunk is written at once, as it comes', () => {
  const { body, out } = piped({ map: false });
  body.push(b('a'));
  expect(out.writes).toEqual(['a']);
  body.push(b('b'));
  expect(out.writes).toEqual(['a', 'b']);
});

test('a full response pauses the upstream after the turn is written, and its drain resumes it', async () => {
  const { body, out, calls } = piped({ highWaterMark: 4 });
  out.hold();
  body.push(b('aaaa'));
  body.push(b('bbbb'));
  expect(calls).toEqual([]);
  await turn();
  expect(calls).toEqual(['pause']);
  body.push(b('c')); // what undici had already read: written, no second pause
  await turn();
  expect(calls).toEqual(['pause']);
  out.release();
  await turn();
  expect(calls).toEqual(['pause', 'resume']);
  expect(out.writes).toEqual(['[aaaa|bbbb]', '[c]']);
});

test("a failure mid-turn: the turn's chunks are dropped, nothing more is written, and the failure is reported", async () => {
  const { body, out, map, errors } = piped();
  body.push(b('a'));
  await turn();
  body.push(b('b'));
  body.fail(new Error('socket closed'));
  await turn();
  expect(out.writes).toEqual(['[a]']);
  expect(map.calls).toEqual([['a']]);
  expect(errors.map((e) => e.message)).toEqual(['socket closed']);
  expect(out.ended()).toBe(false);
});

test('a response destroyed (the browser gone) before its turn is written: nothing is mapped or written to it', async () => {
  const { body, out, map } = piped();
  body.push(b('a'));
  out.dest.destroy();
  await turn();
  expect(map.calls).toEqual([]);
  expect(out.writes).toEqual([]);
});
