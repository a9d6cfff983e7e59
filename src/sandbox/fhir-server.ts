/**
 * The sandbox's FHIR R4 server: checks the bearer token on every resource request (against the sandbox's own
 * authorization server), enforces the token's SMART scopes and patient compartment, and answers with
 * @medplum/fhir-router. Search Bundles carry absolute `link` and `fullUrl` URLs under the FHIR base, with
 * paging by `_count`/`_offset`. Bulk Data export ($export, status URLs, files) is in bulk-data.ts.
 */
import express, { type Request, type Response, type Router } from 'express';
import { getStatus } from '@medplum/core';
import type { FhirRequest, HttpMethod } from '@medplum/fhir-router';
import type { Bundle, OperationOutcome, Resource } from '@medplum/fhirtypes';
import type Provider from 'oidc-provider';
import type { FhirEngine } from './fhir-data.js';
import { bulkDataRouter, type BulkExportOptions } from './bulk-data.js';
import { grantingLevels, type Interaction } from './scope-check.js';
import type { LaunchContextStore } from './launch-context.js';

export interface FhirServerOptions {
  engine: FhirEngine;
  fhirBaseUrl: string;
  provider: Provider;
  contexts: LaunchContextStore;
  smartConfiguration: () => Record<string, unknown>;
  capabilityStatement: () => Record<string, unknown>;
  bulkExport?: BulkExportOptions;
  onRequest?: (e: { method: string; path: string; token?: string; status: number }) => void;
}

const FHIR_JSON = 'application/fhir+json; charset=utf-8';
const TYPE = /^[A-Z][A-Za-z]+$/;

function outcome(code: string, text: string): OperationOutcome {
  return { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: code as 'invalid', details: { text } }] };
}

function send(res: Response, status: number, body: unknown, headers: Record<string, string> = {}): void {
  res.status(status).set({ 'content-type': FHIR_JSON, ...headers }).send(JSON.stringify(body));
}

export function fhirServerRouter(opts: FhirServerOptions): Router {
  const router = express.Router();
  const base = opts.fhirBaseUrl.replace(/\/$/, '');

  router.get('/.well-known/smart-configuration', (_req, res) => {
    res.set('cache-control', 'no-cache').json(opts.smartConfiguration());
  });
  router.get('/metadata', (_req, res) => send(res, 200, opts.capabilityStatement()));

  router.use(express.json({ type: ['application/fhir+json', 'application/json', 'application/json-patch+json'], limit: '5mb' }));
  // Bulk Data: $export kick-off, status URLs and files (system-level tokens only).
  router.use(bulkDataRouter({
    engine: opts.engine, fhirBaseUrl: base, provider: opts.provider, ...(opts.bulkExport ? { options: opts.bulkExport } : {}),
    ...(opts.onRequest ? { onRequest: opts.onRequest } : {}),
  }));

  router.use(async (req: Request, res: Response) => {
    const token = /^Bearer\s+(\S+)$/i.exec(req.get('authorization') ?? '')?.[1];
    const done = (status: number, body: unknown, headers: Record<string, string> = {}) => {
      opts.onRequest?.({ method: req.method, path: req.originalUrl, ...(token ? { token } : {}), status });
      send(res, status, body, headers);
    };
    if (!token) return done(401, outcome('login', 'A bearer token is required.'), { 'www-authenticate': 'Bearer realm="sandbox"' });
    const at = (await opts.provider.AccessToken.find(token)) ?? (await opts.provider.ClientCredentials.find(token));
    if (!at || at.isExpired) return done(401, outcome('login', 'The access token is invalid or expired.'), { 'www-authenticate': 'Bearer realm="sandbox", error="invalid_token"' });
    if (at.aud && at.aud !== base && !(Array.isArray(at.aud) && at.aud.includes(base))) return done(401, outcome('login', 'The access token is not for this FHIR server.'));

    const url = new URL(req.originalUrl, 'http://x');
    const rel = url.pathname.slice(url.pathname.indexOf('/fhir') + '/fhir'.length).replace(/^\//, '');
    const segments = rel.split('/').filter(Boolean);
    const type = segments[0] ?? '';
    if (!TYPE.test(type)) return done(400, outcome('not-supported', 'Only type-level and instance-level interactions are supported here.'));
    const interaction = interactionOf(req.method, segments);
    if (!interaction) return done(405, outcome('not-supported', `${req.method} is not supported on this path.`));

    const scopes = [...(at.scopes ?? [])];
    const levels = grantingLevels(scopes, type, interaction);
    if (levels.size === 0) return done(403, outcome('forbidden', `The token's scopes do not allow ${interaction} on ${type}.`));
    const patientOnly = !levels.has('user') && !levels.has('system');
    const grantId = 'grantId' in at ? (at.grantId as string | undefined) : undefined;
    const ctx = grantId ? opts.contexts.forGrant(grantId) : undefined;
    const patient = ctx?.patient;
    if (patientOnly && !patient) return done(403, outcome('forbidden', 'Patient-level scopes without a patient in context.'));

    const query = new URLSearchParams(url.search);
    if (req.method === 'POST' && segments[1] === '_search' && req.body && typeof req.body === 'object') {
      for (const [k, v] of Object.entries(req.body as Record<string, string>)) query.append(k, String(v));
    }
    for (const p of ['patient', 'subject']) {
      const v = query.get(p);
      if (v && !v.includes('/')) query.set(p, `Patient/${v}`);
    }
    if (patientOnly && interaction === 'search') {
      if (type === 'Patient') {
        const id = query.get('_id');
        if (id && id !== patient) return done(403, outcome('forbidden', 'This token may only read its own patient.'));
        query.set('_id', patient!);
      } else {
        const p = query.get('patient') ?? query.get('subject');
        if (p && p !== `Patient/${patient}`) return done(403, outcome('forbidden', 'This token may only search its own patient\'s records.'));
        if (!p) query.set('patient', `Patient/${patient}`);
      }
    }
    if (patientOnly && interaction === 'read' && type === 'Patient' && segments[1] !== patient) {
      return done(403, outcome('forbidden', 'This token may only read its own patient.'));
    }

    const count = clampInt(query.get('_count'), 20, 1, 200);
    const offset = clampInt(query.get('_offset'), 0, 0, 1_000_000);
    if (interaction === 'search') {
      query.set('_count', String(count));
      query.set('_offset', String(offset));
    }
    const path = interaction === 'search' ? `/${type}` : `/${segments.join('/')}`;
    const method: HttpMethod = interaction === 'search' ? 'GET' : (req.method as HttpMethod);
    const fhirReq: FhirRequest = { method, url: `${path}${query.size ? `?${query}` : ''}`, pathname: '', query: {}, params: {}, body: req.body, headers: req.headers as FhirRequest['headers'] };
    opts.engine.ready();
    const [oo, resource] = await opts.engine.router.handleRequest(fhirReq, opts.engine.repo);
    const status = getStatus(oo);
    if (!resource) return done(status, oo);

    if (patientOnly && interaction === 'read' && type !== 'Patient' && !refersToPatient(resource, patient!)) {
      return done(403, outcome('forbidden', 'This resource belongs to another patient.'));
    }
    if (resource.resourceType === 'Bundle' && (resource as Bundle).type === 'searchset') {
      return done(200, withLinks(resource as Bundle, base, type, query, count, offset));
    }
    const headers: Record<string, string> = {};
    if (resource.id && resource.meta?.versionId) headers.etag = `W/"${resource.meta.versionId}"`;
    if (status === 201 && resource.id) headers.location = `${base}/${resource.resourceType}/${resource.id}/_history/${resource.meta?.versionId ?? '1'}`;
    return done(status, resource, headers);
  });
  return router;
}

function interactionOf(method: string, segments: string[]): Interaction | undefined {
  const n = segments.length;
  if (method === 'GET' || method === 'HEAD') return n === 1 ? 'search' : n >= 2 ? 'read' : undefined;
  if (method === 'POST') return n === 2 && segments[1] === '_search' ? 'search' : n === 1 ? 'create' : undefined;
  if (method === 'PUT' || method === 'PATCH') return n === 2 ? 'update' : undefined;
  if (method === 'DELETE') return n === 2 ? 'delete' : undefined;
  return undefined;
}

function clampInt(v: string | null, dflt: number, min: number, max: number): number {
  const n = v === null ? NaN : Number.parseInt(v, 10);
  return Number.isFinite(n) ? Math.min(max, Math.max(min, n)) : dflt;
}

function refersToPatient(resource: Resource, patient: string): boolean {
  const r = resource as unknown as Record<string, { reference?: string } | undefined>;
  const ref = r.subject?.reference ?? r.patient?.reference ?? r.beneficiary?.reference;
  return ref === `Patient/${patient}`;
}

function withLinks(bundle: Bundle, base: string, type: string, query: URLSearchParams, count: number, offset: number): Bundle {
  const total = bundle.total ?? bundle.entry?.length ?? 0;
  const page = (o: number) => {
    const q = new URLSearchParams(query);
    q.set('_count', String(count));
    q.set('_offset', String(o));
    return `${base}/${type}?${q}`;
  };
  const link: NonNullable<Bundle['link']> = [{ relation: 'self', url: page(offset) }];
  if (offset + count < total) link.push({ relation: 'next', url: page(offset + count) });
  if (offset > 0) link.push({ relation: 'previous', url: page(Math.max(0, offset - count)) });
  return {
    ...bundle,
    total,
    link,
    entry: (bundle.entry ?? []).map((e) => ({ ...e, fullUrl: `${base}/${e.resource?.resourceType}/${e.resource?.id}`, search: { mode: 'match' as const } })),
  };
}
