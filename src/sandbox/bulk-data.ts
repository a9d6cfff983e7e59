/**
 * FHIR Bulk Data Access 2.0 on the sandbox's FHIR server, as strict as a real one:
 *
 *   GET|POST {fhir}/$export, /Patient/$export, /Group/<id>/$export   kick-off: Prefer: respond-async required;
 *            _type, _since, _outputFormat (ndjson), _typeFilter; 202 + Content-Location (the status URL)
 *   GET      {fhir}/bulk-status/<job>     202 with X-Progress and Retry-After while it runs (a poll sooner than
 *                                         half the Retry-After gets 429), then 200 with the manifest
 *   DELETE   {fhir}/bulk-status/<job>     202: the job and its files are gone (404 afterwards)
 *   GET      {fhir}/bulk-files/<job>/<file>.ndjson   the NDJSON (requiresAccessToken: true)
 *
 * Every request needs a system-level access token (client_credentials) whose scopes cover the exported types
 * (system/*.rs, system/Observation.read, …); status and files only for the client that started the job. Errors
 * are OperationOutcomes. The data is a snapshot taken at kick-off; the job then "runs" for `delayMs` so a
 * client sees progress. Jobs are kept in a bounded cache for an hour.
 */
import { randomBytes } from 'node:crypto';
import express, { type Request, type Response, type Router } from 'express';
import { LRUCache } from 'lru-cache';
import { getSearchParameters, isResourceType, parseSearchRequest } from '@medplum/core';
import type { Group, OperationOutcome, Parameters, Resource } from '@medplum/fhirtypes';
import type Provider from 'oidc-provider';
import type { FhirEngine } from './fhir-data.js';
import { SANDBOX_RESOURCE_TYPES } from './sample-data.js';
import { grantingLevels } from './scope-check.js';
import { NDJSON_FORMATS } from '../backend-services/ndjson.js';

export interface BulkExportOptions {
  /** How long a job runs before its files are ready (default 2500 ms: a few status polls). Tests use less. */
  delayMs?: number;
  /** Resources per NDJSON file (default 50, so the sample Observations span two files). */
  maxResourcesPerFile?: number;
}

interface ExportFile { type: string; name: string; count: number; body: string }

interface Job {
  id: string;
  clientId: string;
  request: string;
  transactionTime: string;
  startedAt: number;
  readyAt: number;
  lastPollAt?: number;
  types: string[];
  output: ExportFile[];
}

const JOB_TTL_MS = 3600_000;
const SPECIAL_SEARCH_PARAMS = new Set(['_id', '_lastUpdated', '_tag', '_profile', '_security', '_source']);
const FHIR_INSTANT = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;

function outcome(code: string, text: string, severity: 'error' | 'information' = 'error'): OperationOutcome {
  return { resourceType: 'OperationOutcome', issue: [{ severity, code: code as 'invalid', diagnostics: text }] };
}

class BulkError extends Error {
  constructor(readonly status: number, readonly issueCode: string, message: string, readonly headers: Record<string, string> = {}) {
    super(message);
  }
}

export function bulkDataRouter(o: {
  engine: FhirEngine;
  fhirBaseUrl: string;
  provider: Provider;
  options?: BulkExportOptions;
  onRequest?: (e: { method: string; path: string; token?: string; status: number }) => void;
}): Router {
  const base = o.fhirBaseUrl.replace(/\/$/, '');
  const delayMs = o.options?.delayMs ?? 2500;
  const perFile = Math.max(1, o.options?.maxResourcesPerFile ?? 50);
  // A bounded cache of jobs: at most 100, each for an hour.
  const jobs = new LRUCache<string, Job>({ max: 100, ttl: JOB_TTL_MS });
  const router = express.Router();

  /** The system-level token of the request: its client and scopes. */
  async function systemToken(req: Request): Promise<{ clientId: string; scopes: string[] }> {
    const token = /^Bearer\s+(\S+)$/i.exec(req.get('authorization') ?? '')?.[1];
    const challenge = { 'www-authenticate': 'Bearer realm="sandbox"' };
    if (!token) throw new BulkError(401, 'login', 'A bearer token is required.', challenge);
    const cc = await o.provider.ClientCredentials.find(token);
    if (!cc || cc.isExpired) {
      const user = await o.provider.AccessToken.find(token);
      if (user && !user.isExpired) throw new BulkError(403, 'forbidden', 'Bulk Data export needs a system-level token (client_credentials with system/ scopes), not a user or patient token.');
      throw new BulkError(401, 'login', 'The access token is invalid or expired.', { 'www-authenticate': 'Bearer realm="sandbox", error="invalid_token"' });
    }
    const aud = cc.aud as string | string[] | undefined;
    if (aud && aud !== base && !(Array.isArray(aud) && aud.includes(base))) throw new BulkError(401, 'login', 'The access token is not for this FHIR server.');
    return { clientId: String(cc.clientId ?? ''), scopes: [...(cc.scopes ?? [])] };
  }

  const canExport = (scopes: string[], type: string) => grantingLevels(scopes, type, 'read').has('system');

  async function kickoff(req: Request, level: 'system' | 'patient' | 'group', groupId?: string): Promise<{ status: number; headers: Record<string, string>; body: unknown }> {
    const { clientId, scopes } = await systemToken(req);
    if (!/(^|[\s,;])respond-async($|[\s,;])/.test(req.get('prefer') ?? '')) {
      throw new BulkError(400, 'invalid', 'The kick-off request needs the header Prefer: respond-async.');
    }
    const accept = req.get('accept');
    if (accept && !/application\/fhir\+json|application\/json|\*\/\*/.test(accept)) {
      throw new BulkError(406, 'not-supported', `Accept: ${accept} is not supported; the kick-off answers application/fhir+json.`);
    }
    const strict = /handling=strict/.test(req.get('prefer') ?? '');
    const params = readParameters(req);
    const unknown = [...params.keys()].filter((k) => !['_type', '_since', '_outputFormat', '_typeFilter'].includes(k));
    if (unknown.length && strict) throw new BulkError(400, 'not-supported', `Unsupported parameter(s) with Prefer: handling=strict: ${unknown.join(', ')}.`);

    const format = params.get('_outputFormat')?.[0];
    if (format !== undefined && !NDJSON_FORMATS.has(format)) {
      throw new BulkError(400, 'not-supported', `_outputFormat ${format} is not supported: use application/fhir+ndjson.`);
    }
    const since = params.get('_since')?.[0];
    if (since !== undefined && (!FHIR_INSTANT.test(since) || Number.isNaN(Date.parse(since)))) {
      throw new BulkError(400, 'invalid', `_since must be a FHIR instant with a time zone (e.g. 2026-01-01T00:00:00Z), not ${JSON.stringify(since)}.`);
    }
    const requestedTypes = params.get('_type')?.flatMap((v) => v.split(',')).map((t) => t.trim()).filter(Boolean);
    const badTypes = (requestedTypes ?? []).filter((t) => !isResourceType(t));
    if (badTypes.length) throw new BulkError(400, 'not-supported', `Unknown resource type(s) in _type: ${badTypes.join(', ')}.`);

    const filters = new Map<string, string[]>();
    for (const f of params.get('_typeFilter') ?? []) {
      const type = f.split('?')[0] ?? '';
      const query = f.slice(type.length + 1);
      if (!isResourceType(type) || !f.includes('?') || !query) throw new BulkError(400, 'invalid', `_typeFilter must be Type?search-parameters, not ${JSON.stringify(f)}.`);
      const known = getSearchParameters(type) ?? {};
      for (const name of new URLSearchParams(query).keys()) {
        const code = name.split(':')[0]!;
        if (!SPECIAL_SEARCH_PARAMS.has(code) && !(code in known)) throw new BulkError(400, 'not-supported', `_typeFilter: ${type} has no search parameter ${code}.`);
      }
      filters.set(type, [...(filters.get(type) ?? []), f]);
    }

    let types = requestedTypes?.length ? [...new Set(requestedTypes)] : [...SANDBOX_RESOURCE_TYPES];
    if (requestedTypes?.length) {
      const denied = types.filter((t) => !canExport(scopes, t));
      if (denied.length) throw new BulkError(403, 'forbidden', `The token's scopes do not allow exporting ${denied.join(', ')} (ask for system/<Type>.rs or system/*.rs).`);
    } else {
      types = types.filter((t) => canExport(scopes, t));
      if (!types.length) throw new BulkError(403, 'forbidden', 'The token\'s scopes allow exporting no resource type (ask for system/*.rs, or system/<Type>.rs per type).');
    }

    o.engine.ready();
    let patients: Set<string> | undefined;
    if (level === 'group') {
      const group = await o.engine.repo.readResource<Group>('Group', groupId!).catch(() => undefined);
      if (!group) throw new BulkError(404, 'not-found', `Group/${groupId} does not exist.`);
      patients = new Set((group.member ?? []).map((m) => m.entity?.reference ?? '').filter((r) => r.startsWith('Patient/')).map((r) => r.slice('Patient/'.length)));
    } else if (level === 'patient') {
      patients = new Set(((await o.engine.repo.search({ resourceType: 'Patient' })).entry ?? []).map((e) => e.resource!.id!));
    }

    const transactionTime = new Date().toISOString();
    const output: ExportFile[] = [];
    for (const type of types) {
      let resources: Resource[] = ((await o.engine.repo.search({ resourceType: type as 'Patient' })).entry ?? []).map((e) => e.resource as Resource);
      if (patients) resources = resources.filter((r) => inCompartment(r, patients!));
      if (since) resources = resources.filter((r) => Date.parse(r.meta?.lastUpdated ?? '') > Date.parse(since));
      const typeFilters = filters.get(type);
      if (typeFilters) {
        const matching = new Set<string>();
        for (const f of typeFilters) {
          const search = parseSearchRequest(f);
          delete search.count;
          delete search.offset;
          for (const e of (await o.engine.repo.search(search)).entry ?? []) matching.add(e.resource!.id!);
        }
        resources = resources.filter((r) => matching.has(r.id!));
      }
      for (let i = 0; i < resources.length; i += perFile) {
        const chunk = resources.slice(i, i + perFile);
        output.push({ type, name: `${type}-${i / perFile + 1}.ndjson`, count: chunk.length, body: chunk.map((r) => `${JSON.stringify(r)}\n`).join('') });
      }
    }
    const id = randomBytes(12).toString('base64url');
    const now = Date.now();
    jobs.set(id, { id, clientId, request: new URL(req.originalUrl, base).href, transactionTime, startedAt: now, readyAt: now + delayMs, types, output });
    return {
      status: 202,
      headers: { 'content-location': `${base}/bulk-status/${id}` },
      body: outcome('informational', `Export started: poll ${base}/bulk-status/${id}`, 'information'),
    };
  }

  async function jobFor(req: Request, id: string): Promise<Job> {
    const { clientId } = await systemToken(req);
    const job = jobs.get(id);
    if (!job) throw new BulkError(404, 'not-found', 'No such export job (finished jobs are kept for an hour; deleted ones are gone).');
    if (job.clientId !== clientId) throw new BulkError(403, 'forbidden', 'This export job belongs to another client.');
    return job;
  }

  function status(job: Job): { status: number; headers: Record<string, string>; body: unknown } {
    const now = Date.now();
    if (job.lastPollAt !== undefined && now - job.lastPollAt < 500) {
      return { status: 429, headers: { 'retry-after': '1' }, body: outcome('throttled', 'Polled too soon: wait as long as Retry-After says.') };
    }
    job.lastPollAt = now;
    if (now < job.readyAt) {
      const pct = Math.min(99, Math.floor(((now - job.startedAt) / Math.max(1, job.readyAt - job.startedAt)) * 100));
      return { status: 202, headers: { 'x-progress': `${pct}% done (${job.types.length} resource type${job.types.length === 1 ? '' : 's'})`, 'retry-after': '1' }, body: undefined };
    }
    return {
      status: 200,
      headers: { 'content-type': 'application/json', expires: new Date(job.startedAt + JOB_TTL_MS).toUTCString() },
      body: {
        transactionTime: job.transactionTime,
        request: job.request,
        requiresAccessToken: true,
        output: job.output.map((f) => ({ type: f.type, url: `${base}/bulk-files/${job.id}/${f.name}`, count: f.count })),
        error: [],
      },
    };
  }

  router.use(async (req: Request, res: Response, next) => {
    const segments = req.path.split('/').filter(Boolean).map((s) => { try { return decodeURIComponent(s); } catch { return s; } });
    const reply = (r: { status: number; headers: Record<string, string>; body: unknown }) => {
      o.onRequest?.({ method: req.method, path: req.originalUrl, ...(tokenOf(req) ? { token: tokenOf(req)! } : {}), status: r.status });
      res.status(r.status).set({ 'content-type': 'application/fhir+json; charset=utf-8', 'cache-control': 'no-store', ...r.headers });
      if (r.body === undefined) res.end();
      else res.send(typeof r.body === 'string' ? r.body : JSON.stringify(r.body));
    };
    try {
      const last = segments.at(-1);
      if (last === '$export') {
        if (req.method !== 'GET' && req.method !== 'POST') throw new BulkError(405, 'not-supported', `${req.method} is not supported on $export.`);
        if (segments.length === 1) return reply(await kickoff(req, 'system'));
        if (segments.length === 2 && segments[0] === 'Patient') return reply(await kickoff(req, 'patient'));
        if (segments.length === 3 && segments[0] === 'Group') return reply(await kickoff(req, 'group', segments[1]));
        throw new BulkError(404, 'not-found', '$export is served at [base]/$export, [base]/Patient/$export and [base]/Group/<id>/$export.');
      }
      if (segments[0] === 'bulk-status' && segments.length === 2) {
        const job = await jobFor(req, segments[1]!);
        if (req.method === 'DELETE') {
          jobs.delete(job.id);
          return reply({ status: 202, headers: {}, body: outcome('informational', 'The export job and its files were deleted.', 'information') });
        }
        if (req.method !== 'GET') throw new BulkError(405, 'not-supported', `${req.method} is not supported on a status URL.`);
        return reply(status(job));
      }
      if (segments[0] === 'bulk-files' && segments.length === 3) {
        if (req.method !== 'GET') throw new BulkError(405, 'not-supported', `${req.method} is not supported on a file.`);
        const job = await jobFor(req, segments[1]!);
        const file = Date.now() >= job.readyAt ? job.output.find((f) => f.name === segments[2]) : undefined;
        if (!file) throw new BulkError(404, 'not-found', 'No such file in this export.');
        o.onRequest?.({ method: req.method, path: req.originalUrl, token: tokenOf(req)!, status: 200 });
        res.status(200).set({ 'content-type': 'application/fhir+ndjson', 'cache-control': 'no-store', 'content-length': String(Buffer.byteLength(file.body)) }).end(file.body);
        return;
      }
      next();
    } catch (err) {
      if (err instanceof BulkError) return reply({ status: err.status, headers: err.headers, body: outcome(err.issueCode, err.message) });
      throw err;
    }
  });
  return router;
}

function tokenOf(req: Request): string | undefined {
  return /^Bearer\s+(\S+)$/i.exec(req.get('authorization') ?? '')?.[1];
}

/** Kick-off parameters from the query (GET) or a Parameters resource (POST), as name → values. */
function readParameters(req: Request): Map<string, string[]> {
  const out = new Map<string, string[]>();
  const add = (k: string, v: string) => out.set(k, [...(out.get(k) ?? []), v]);
  for (const [k, v] of new URL(req.originalUrl, 'http://x').searchParams) add(k, v);
  if (req.method === 'POST') {
    const body = req.body as Parameters | undefined;
    if (!body || body.resourceType !== 'Parameters') throw new BulkError(400, 'invalid', 'A POST kick-off needs a Parameters resource (Content-Type: application/fhir+json).');
    for (const p of body.parameter ?? []) {
      const v = p.valueString ?? p.valueInstant ?? p.valueCode ?? (p as { valueUri?: string }).valueUri;
      if (p.name && typeof v === 'string') add(p.name, v);
    }
  }
  return out;
}

function inCompartment(r: Resource, patients: Set<string>): boolean {
  if (r.resourceType === 'Patient') return patients.has(r.id ?? '');
  const x = r as unknown as Record<string, { reference?: string } | undefined>;
  const ref = x.subject?.reference ?? x.patient?.reference ?? x.beneficiary?.reference;
  return Boolean(ref?.startsWith('Patient/') && patients.has(ref.slice('Patient/'.length)));
}
