/**
 * The launch trace pages: `GET /admin/launches` (recent launches, failed first, each with its timeline and, when it
 * failed, the diagnosis and the fix; `?failed=1` for failures only), `GET /admin/launches/<id>` (one launch), and
 * `GET /admin/api/launches` (the same stories as JSON, as `smart-bff explain --json` prints them). The stories
 * come from launch-trace/story.ts, as explain's do. Pages render known fields only, escaped by the templates.
 */
import type { Router } from 'express';
import { AppError, ErrorCode } from '../http/errors.js';
import type { LaunchTrace } from '../launch-trace/collector.js';
import { formatMs, summarize } from '../launch-trace/story.js';
import { isTraceKey, refusedTraceSize } from '../launch-trace/trace-store.js';
import type { OperatorAuth } from './operator-auth.js';

export const OUTCOME_LABELS = { failed: 'Failed', pending: 'No callback yet', complete: 'Complete' } as const;
/** Launches one page shows (failed first); the JSON has them all. */
const PAGE_LIMIT = 200;

export function addLaunchPages(router: Router, o: { auth: OperatorAuth; trace: LaunchTrace; traceSize: number }): void {
  router.get('/launches', o.auth.requirePage, async (req, res) => {
    const failed = req.query.failed === '1';
    const all = await o.trace.stories();
    const matching = failed ? all.filter((s) => s.outcome === 'failed') : all;
    res.render('admin/launches', {
      title: 'Launches', section: 'launches', stories: matching.slice(0, PAGE_LIMIT), hidden: Math.max(0, matching.length - PAGE_LIMIT),
      failed, summary: summarize(all), traceSize: o.traceSize, refusedSize: refusedTraceSize(o.traceSize), labels: OUTCOME_LABELS, formatMs,
    });
  });

  router.get('/launches/:id', o.auth.requirePage, async (req, res) => {
    const id = req.params.id as string;
    const story = isTraceKey(id) ? await o.trace.story(id) : undefined;
    if (!story) throw new AppError(ErrorCode.NOT_FOUND, 404, 'This launch is not in the trace (it may be older than the launches kept).');
    res.render('admin/launch', { title: `Launch ${story.launchId ?? story.requestIds[0] ?? story.id}`, section: 'launches', story, labels: OUTCOME_LABELS, formatMs });
  });

  router.get('/api/launches', o.auth.requireApi, async (req, res) => {
    const stories = await o.trace.stories(req.query.failed === '1' ? { failed: true } : {});
    res.json({ summary: summarize(stories), launches: stories });
  });
}
