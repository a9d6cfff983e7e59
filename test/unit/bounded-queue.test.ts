/** The revocation backlog (context-endings.ts): bounded concurrency, a bounded backlog, urgent work first. */
import { BoundedQueue } from '../../src/smart/context-endings.js';

function deferred() {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

test('at most `concurrency` tasks run at once; the rest wait their turn, in order', async () => {
  const q = new BoundedQueue(2, 10);
  let running = 0;
  let most = 0;
  const order: number[] = [];
  const gates = Array.from({ length: 5 }, deferred);
  const runs = gates.map((g, i) => q.run(async () => {
    running++;
    most = Math.max(most, running);
    order.push(i);
    await g.promise;
    running--;
    return i;
  }));
  await new Promise((r) => setImmediate(r));
  expect(order).toEqual([0, 1]);
  gates[1]!.resolve();
  await new Promise((r) => setImmediate(r));
  expect(order).toEqual([0, 1, 2]);
  // a task arriving while one waits does not jump the queue, and the slot handed over is not doubled
  const late = q.run(async () => { order.push(99); return 99; });
  for (const g of gates) g.resolve();
  expect(await Promise.all(runs)).toEqual([{ ran: true, value: 0 }, { ran: true, value: 1 }, { ran: true, value: 2 }, { ran: true, value: 3 }, { ran: true, value: 4 }]);
  expect(await late).toEqual({ ran: true, value: 99 });
  expect(order).toEqual([0, 1, 2, 3, 4, 99]);
  expect(most).toBe(2);
});

test('past the backlog a task is refused, not queued; an urgent one is never refused and goes first', async () => {
  const q = new BoundedQueue(1, 1);
  const gate = deferred();
  const order: string[] = [];
  const first = q.run(async () => { order.push('first'); await gate.promise; });
  const waiting = q.run(async () => { order.push('waiting'); });
  expect(await q.run(async () => { order.push('refused'); })).toEqual({ ran: false });
  const urgent = q.run(async () => { order.push('urgent'); }, true);
  gate.resolve();
  await Promise.all([first, waiting, urgent]);
  expect(order).toEqual(['first', 'urgent', 'waiting']);
});
