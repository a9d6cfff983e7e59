/** One writer per job record: writes land in order, and nothing lands after the final status. */
import { JobWriter } from '../../../src/backend-services/job-writer.js';

type Rec = { status: string; progress?: string };

function slowStore(delays: number[]) {
  const landed: Rec[] = [];
  let busy = 0;
  let overlapped = false;
  const write = async (r: Rec) => {
    if (busy++) overlapped = true;
    await new Promise((res) => setTimeout(res, delays.shift() ?? 0));
    landed.push(r);
    busy--;
  };
  return { landed, write, overlapped: () => overlapped };
}

test('regression: a slow progress write asked before the completion never lands after it', async () => {
  const store = slowStore([80, 0]); // the progress write is slow, the completion fast
  const w = new JobWriter<Rec>({ status: 'running' }, store.write);
  void w.progress({ progress: '90%' });
  expect(await w.finish({ status: 'complete', progress: undefined })).toBe(true);
  expect(store.landed.map((r) => r.status)).toEqual(['running', 'complete']);
  expect(store.landed.at(-1)!.status).toBe('complete');
  expect(store.overlapped()).toBe(false);
});

test('after the final status: progress is dropped and a second final status is refused', async () => {
  const store = slowStore([]);
  const w = new JobWriter<Rec>({ status: 'running' }, store.write);
  expect(await w.finish({ status: 'complete' })).toBe(true);
  await w.progress({ progress: '50%' });
  expect(await w.finish({ status: 'cancelled' })).toBe(false);
  expect(store.landed).toEqual([{ status: 'complete' }]);
  expect(w.current.status).toBe('complete');
});
