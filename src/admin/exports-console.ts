/**
 * Exports from the console: `GET /admin/exports` (the form and the jobs), and for its script `GET
 * /admin/api/exports` (the jobs with their live progress), `POST /admin/api/exports` (start), `DELETE
 * /admin/api/exports/<id>` (cancel), plus `GET /admin/exports/<id>/files/<name>` (a finished file, streamed, as a
 * download). The same ExportJobs as /api/bulk-data runs them, started through the same request check
 * (`startExport`): a registration is named from the server's configuration; private keys never travel through a
 * browser.
 */
import express, { type Router } from 'express';
import { startExport } from '../backend-services/http-api.js';
import type { ExportJobs, JobRecord } from '../backend-services/export-jobs.js';
import type { ExportState } from '../backend-services/export-state.js';
import { showFailure } from '../backend-services/export-errors.js';
import { sendExportFile } from '../backend-services/send-file.js';
import { AppError, ErrorCode } from '../http/errors.js';
import type { OperatorAuth } from './operator-auth.js';

/** What the console shows of a job: never a URL of the FHIR server's files, never a token. */
export function jobView(job: JobRecord, state: ExportState | undefined) {
  const p = job.parameters;
  return {
    id: job.id,
    registration: job.registration,
    level: p.level,
    groupId: p.groupId ?? null,
    types: p.types ?? [],
    since: p.since ?? null,
    status: job.status,
    createdAt: job.createdAt,
    updatedAt: job.updatedAt,
    progress: job.progress ?? null,
    filesDone: job.filesDone ?? state?.files.filter((f) => f.done).length ?? 0,
    filesTotal: job.filesTotal ?? state?.files.length ?? 0,
    resources: job.resources ?? 0,
    bytes: job.bytes ?? 0,
    error: job.error ? (({ code, message, causes, hint }) => ({ code, message, causes, hint: hint ?? null }))(showFailure(job.error)) : null,
    summary: job.summary ? { files: job.summary.files, resourcesByType: job.summary.resourcesByType, errors: job.summary.errors, bytes: job.summary.bytes, seconds: job.summary.seconds } : null,
    files: (state?.files ?? []).filter((f) => f.done).map((f) => ({
      name: f.path, type: f.type, kind: f.kind, resources: f.resources, bytes: f.bytes, url: `/admin/exports/${job.id}/files/${f.path}`,
    })),
  };
}

export function addExportsConsole(router: Router, o: { auth: OperatorAuth; jobs: ExportJobs }): void {
  router.get('/exports', o.auth.requirePage, (_req, res) => {
    res.render('admin/exports', {
      title: 'Exports', section: 'exports',
      registrations: o.jobs.registrations.map((r) => ({ name: r.name, iss: r.iss })),
    });
  });

  router.get('/api/exports', o.auth.requireApi, async (_req, res) => {
    const jobs = await o.jobs.list(50);
    res.json({ jobs: jobs.map(({ job, state }) => jobView(job, state)) });
  });

  router.post('/api/exports', o.auth.antiForgery, o.auth.requireApi, express.json({ limit: '16kb' }), async (req, res) => {
    const job = await startExport(o.jobs, req.body);
    req.log.info({ event: 'admin.export_started', jobId: job.id, registration: job.registration, level: job.parameters.level }, 'operator console: export started');
    res.status(202).json({ id: job.id, status: job.status });
  });

  router.delete('/api/exports/:id', o.auth.antiForgery, o.auth.requireApi, async (req, res) => {
    const result = await o.jobs.cancel(req.params.id as string);
    if (!result) throw new AppError(ErrorCode.NOT_FOUND, 404, 'No such export job.');
    if (result.pending) return void res.status(202).json({ id: result.job.id, status: 'cancelling' });
    if (!result.cancelled) throw new AppError(ErrorCode.JOB_NOT_RUNNING, 409, `The export job is already ${result.job.status}; there is nothing to cancel.`);
    req.log.info({ event: 'admin.export_cancelled', jobId: result.job.id }, 'operator console: export cancelled');
    res.json({ id: result.job.id, status: result.job.status });
  });

  router.get('/exports/:id/files/:name', o.auth.requirePage, async (req, res) => {
    const file = await o.jobs.file(req.params.id as string, req.params.name as string);
    if (!file) throw new AppError(ErrorCode.NOT_FOUND, 404, 'No such file (yet).');
    // the name is an exporter's own (letters, digits, - and _ then .ndjson): nothing to escape
    await sendExportFile(req, res, file, { 'content-disposition': `attachment; filename="${req.params.name as string}"` });
  });
}
