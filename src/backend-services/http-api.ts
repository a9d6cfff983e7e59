/**
 * The operators' Bulk Data API: `POST /api/bulk-data/exports` (a registration by name, the export parameters,
 * `keep` and `timeoutSeconds`; never a key), `GET /api/bulk-data/exports/:id` (status, files, and for a failed
 * job its error: code, message, likely causes), `GET …/:id/files/:name`, `DELETE …/:id` (cancels a running job
 * and deletes it on the FHIR server; a finished job answers 409 and stays as it is). Bearer `ADMIN_TOKEN`; off
 * (404) when it is not set.
 */
import { bearerMatches } from '../http/secret-compare.js';
import express, { type Router } from 'express';
import { z } from 'zod';
import { AppError, ErrorCode } from '../http/errors.js';
import type { ExportJobs, JobRecord } from './export-jobs.js';
import { DEFAULT_EXPORT_TIMEOUT_SECONDS } from './bulk-export.js';
import { showFailure } from './export-errors.js';
import { sendExportFile } from './send-file.js';

const body = z.object({
  registration: z.string().min(1).default('default'),
  level: z.enum(['system', 'patient', 'group']).default('system'),
  groupId: z.string().regex(/^[A-Za-z0-9.-]{1,64}$/).optional(),
  types: z.array(z.string().regex(/^[A-Z][A-Za-z]+$/)).max(200).optional(),
  since: z.string().datetime({ offset: true }).optional(),
  typeFilters: z.array(z.string().max(2000)).max(50).optional(),
  outputFormat: z.string().max(100).optional(),
  /** Leave the job on the FHIR server after the files are downloaded (default: DELETE it). */
  keep: z.boolean().default(false),
  /** Overall deadline for the export, from now (default six hours, at most seven days). */
  timeoutSeconds: z.number().int().min(1).max(7 * 86400).default(DEFAULT_EXPORT_TIMEOUT_SECONDS),
}).strict();

/**
 * Starts an export job from a request body (this API's, or the operator console's form): validated, a
 * registration named (never a key), then created on the one ExportJobs. Bad input is a 400 AppError.
 */
export async function startExport(jobs: ExportJobs, input: unknown): Promise<JobRecord> {
  const raw = (input && typeof input === 'object' ? input : {}) as Record<string, unknown>;
  if (['privateKey', 'private_key', 'key', 'clientSecret', 'client_secret', 'jwk'].some((k) => k in raw)) {
    throw new AppError(ErrorCode.BAD_REQUEST, 400, 'Keys and secrets are never accepted in a request: name a registration configured on the server.');
  }
  const parsed = body.safeParse(raw);
  if (!parsed.success) throw new AppError(ErrorCode.BAD_REQUEST, 400, `Invalid export request: ${parsed.error.issues.map((i) => `${i.path.join('.') || 'body'}: ${i.message}`).join('; ')}`);
  const p = parsed.data;
  if (p.level === 'group' && !p.groupId) throw new AppError(ErrorCode.BAD_REQUEST, 400, 'A group-level export needs groupId.');
  const registration = jobs.registration(p.registration);
  if (!registration && !jobs.registrations.length) {
    throw new AppError(ErrorCode.BAD_REQUEST, 400, 'No backend registration is configured on the server: set SMART_BACKEND_ISS, SMART_BACKEND_CLIENT_ID and SMART_BACKEND_KEY_FILE (or BACKEND_CONFIG_FILE).');
  }
  if (!registration) throw new AppError(ErrorCode.BAD_REQUEST, 400, `No backend registration is named ${JSON.stringify(p.registration)}.`);
  return jobs.create(registration, {
    level: p.level, ...(p.groupId ? { groupId: p.groupId } : {}), ...(p.types ? { types: p.types } : {}), ...(p.since ? { since: p.since } : {}),
    ...(p.typeFilters ? { typeFilters: p.typeFilters } : {}), ...(p.outputFormat ? { outputFormat: p.outputFormat } : {}),
  }, { keep: p.keep, timeoutSeconds: p.timeoutSeconds });
}

export function createBulkDataRouter(o: { adminToken: string; jobs: ExportJobs }): Router {
  const router = express.Router({ caseSensitive: true });
  router.use((req, _res, next) => {
    if (!bearerMatches(req.get('authorization'), o.adminToken)) {
      return next(new AppError(ErrorCode.NOT_AUTHENTICATED, 401, 'This API needs Authorization: Bearer <ADMIN_TOKEN>.'));
    }
    next();
  });
  router.use(express.json({ limit: '32kb' }));

  router.post('/exports', async (req, res) => {
    const job = await startExport(o.jobs, req.body);
    res.status(202).set('content-location', `/api/bulk-data/exports/${job.id}`).json({ id: job.id, status: job.status, status_url: `/api/bulk-data/exports/${job.id}` });
  });

  router.get('/exports/:id', async (req, res) => {
    const found = await o.jobs.get(req.params.id);
    if (!found) throw new AppError(ErrorCode.NOT_FOUND, 404, 'No such export job.');
    const { job, state } = found;
    res.json({
      ...job,
      ...(job.error ? { error: showFailure(job.error) } : {}),
      files: (state?.files ?? []).map((f) => ({ type: f.type, kind: f.kind, name: f.path, done: f.done, bytes: f.bytes, resources: f.resources, url: `/api/bulk-data/exports/${job.id}/files/${f.path}` })),
    });
  });

  router.get('/exports/:id/files/:name', async (req, res) => {
    const file = await o.jobs.file(req.params.id, req.params.name);
    if (!file) throw new AppError(ErrorCode.NOT_FOUND, 404, 'No such file (yet).');
    await sendExportFile(req, res, file, {});
  });

  router.delete('/exports/:id', async (req, res) => {
    const result = await o.jobs.cancel(req.params.id);
    if (!result) throw new AppError(ErrorCode.NOT_FOUND, 404, 'No such export job.');
    const { job, cancelled } = result;
    if (result.pending) {
      // driven by another instance, which was asked to cancel it and has not yet: it will at its next lease renewal
      res.status(202).json({ id: job.id, status: 'cancelling' });
      return;
    }
    if (!cancelled) {
      throw new AppError(ErrorCode.JOB_NOT_RUNNING, 409, `The export job is already ${job.status}; there is nothing to cancel.`, {
        hint: 'GET the job for its status and files.',
      });
    }
    res.json({ id: job.id, status: job.status });
  });
  return router;
}
