/** runSteps: connect-style steps run in order, an error skips to the next error handler, throws are caught. */
import type { ErrorRequestHandler, Request, RequestHandler, Response } from 'express';
import { runSteps } from '../../src/proxy/fhir-route.js';

const req = {} as Request;
const res = {} as Response;

function run(steps: (RequestHandler | ErrorRequestHandler)[]): Promise<unknown> {
  return new Promise((resolve) => runSteps(steps, req, res, (err) => resolve(err ?? 'done')));
}

test('steps run in order and finish without an error', async () => {
  const seen: string[] = [];
  const step = (name: string): RequestHandler => (_q, _s, next) => { seen.push(name); next(); };
  expect(await run([step('a'), step('b'), step('c')])).toBe('done');
  expect(seen).toEqual(['a', 'b', 'c']);
});

test('an error skips plain steps and reaches the next error handler, which may recover or replace it', async () => {
  const seen: string[] = [];
  const failing: RequestHandler = (_q, _s, next) => next(new Error('store down'));
  const skipped: RequestHandler = (_q, _s, next) => { seen.push('skipped'); next(); };
  const translate: ErrorRequestHandler = (err, _q, _s, next) => { seen.push(`handler:${(err as Error).message}`); next(new Error('503')); };
  const result = await run([failing, skipped, translate, skipped]);
  expect((result as Error).message).toBe('503');
  expect(seen).toEqual(['handler:store down']);
});

test('a step that throws is an error, not a crash; error handlers are skipped when all is well', async () => {
  const seen: string[] = [];
  const handler: ErrorRequestHandler = (_e, _q, _s, next) => { seen.push('handler'); next(); };
  const ok: RequestHandler = (_q, _s, next) => { seen.push('ok'); next(); };
  expect(await run([handler, ok])).toBe('done');
  expect(seen).toEqual(['ok']);
  const thrown = await run([() => { throw new Error('boom'); }]);
  expect((thrown as Error).message).toBe('boom');
});
