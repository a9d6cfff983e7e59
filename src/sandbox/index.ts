/**
 * The built-in development EHR ("sandbox"): a real authorization server (oidc-provider, speaking SMART) and a
 * FHIR R4 server with sample patients, plus a page that lists the patients with a button that performs a real
 * EHR launch of the app. Development and tests only: the app refuses to mount it in production.
 *
 *   {baseUrl}/            patients, with "Launch app"; backend services in short
 *   {baseUrl}/auth/…      the authorization server (issuer)
 *   {baseUrl}/fhir/…      the FHIR server (the SMART `iss`), with .well-known/smart-configuration and Bulk Data
 *                         ($export at system, Patient and Group level)
 *   {baseUrl}/backend-services            backend clients: sandbox-backend (keys from a directory), register a JWKS
 *   {baseUrl}/backend-services/jwks.json  the public keys sandbox-backend accepts now
 */
import { EventEmitter } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import express, { type Router } from 'express';
import type Provider from 'oidc-provider';
import type { Logger } from 'pino';
import { BackendClients, JwksProblem, KEYS_DIR_CLIENT_ID } from './backend-clients.js';
import type { BulkExportOptions } from './bulk-data.js';
import { createFhirEngine } from './fhir-data.js';
import { fhirServerRouter } from './fhir-server.js';
import { interactionRouter } from './interactions.js';
import { LaunchContextStore } from './launch-context.js';
import { createProvider, type SandboxClient } from './provider.js';
import { SAMPLE_GROUP_ID, SANDBOX_RESOURCE_TYPES, samplePatients, type SamplePatient } from './sample-data.js';
import { renderBackendServices, renderHome, renderSandboxError } from './views.js';

export type { SandboxClient };

export interface SandboxOptions {
  /** Absolute URL where the sandbox is served, no trailing slash, e.g. http://localhost:3000/sandbox */
  baseUrl: string;
  clients: SandboxClient[];
  /** Default 3600; tests use small values to force refreshes. */
  accessTokenTtlSeconds?: number;
  refreshTokenTtlSeconds?: number;
  /** Lets tests change the advertised SMART configuration (drop S256, v1 only, …). */
  smartConfiguration?: (doc: Record<string, unknown>) => Record<string, unknown>;
  /** Tests: accept any redirect URI matching this pattern (apps on ephemeral ports). */
  redirectUriPattern?: RegExp;
  /**
   * The directory whose public JWKS files (`*.jwks.json`, as `smart-bff keys generate` writes them) are the keys
   * of the backend client `sandbox-backend`, read at every token request. Without it there is no such client.
   */
  keysDir?: string;
  /** Bulk Data export timing (tests shorten the job). */
  bulkExport?: BulkExportOptions;
  logger?: Logger;
}

export interface Sandbox {
  handler: Router;
  issuer: string;
  fhirBaseUrl: string;
  provider: Provider;
  patients: SamplePatient[];
  createLaunch(context: { patient?: string; encounter?: string; clientId?: string }): string;
  /** Registers a backend-services client (client_credentials, private_key_jwt) with a public JWKS, as an EHR console does. */
  registerBackendClient(input: { clientId?: string; jwks: unknown }): { clientId: string };
  /** The sample Group for group-level exports. */
  groupId: string;
  /**
   * 'token-request', 'token-response' (real secret values, for tests that prove they are never logged),
   * 'revocation' (each revocation request: the token, its hint, the client, the status answered), 'fhir-request'.
   */
  events: EventEmitter;
  close(): Promise<void>;
}

export async function createSandbox(opts: SandboxOptions): Promise<Sandbox> {
  const baseUrl = opts.baseUrl.replace(/\/+$/, '');
  const basePath = new URL(baseUrl).pathname.replace(/\/+$/, '');
  const issuer = `${baseUrl}/auth`;
  const fhirBaseUrl = `${baseUrl}/fhir`;
  const styleUrl = `${baseUrl}/smart-style.json`;
  const interactionPath = `${basePath}/interaction`;
  const events = new EventEmitter();
  const contexts = new LaunchContextStore();
  const engine = await createFhirEngine();
  const backendClients = new BackendClients({ keysDir: opts.keysDir, isTaken: (id) => opts.clients.some((c) => c.client_id === id) });
  const provider = await createProvider({
    issuer, fhirBaseUrl, styleUrl, interactionPath, clients: opts.clients, contexts, events, backendClients,
    accessTokenTtlSeconds: opts.accessTokenTtlSeconds ?? 3600,
    refreshTokenTtlSeconds: opts.refreshTokenTtlSeconds ?? 14 * 86400,
    ...(opts.redirectUriPattern ? { redirectUriPattern: opts.redirectUriPattern } : {}),
  });
  provider.on('server_error', (_ctx, err) => opts.logger?.error({ event: 'sandbox.server_error', reason: err.message }, 'sandbox: authorization server error'));

  const smartConfiguration = () => {
    const doc: Record<string, unknown> = {
      issuer,
      jwks_uri: `${issuer}/jwks`,
      authorization_endpoint: `${issuer}/auth`,
      token_endpoint: `${issuer}/token`,
      revocation_endpoint: `${issuer}/token/revocation`,
      introspection_endpoint: `${issuer}/token/introspection`,
      userinfo_endpoint: `${issuer}/me`,
      grant_types_supported: ['authorization_code', 'refresh_token', 'client_credentials'],
      response_types_supported: ['code'],
      scopes_supported: ['openid', 'fhirUser', 'profile', 'launch', 'launch/patient', 'launch/encounter', 'online_access', 'offline_access', 'patient/*.rs', 'user/*.rs', 'system/*.rs', 'patient/*.read', 'user/*.read', 'system/*.read'],
      token_endpoint_auth_methods_supported: ['private_key_jwt', 'client_secret_basic', 'client_secret_post'],
      token_endpoint_auth_signing_alg_values_supported: ['RS384', 'ES384'],
      code_challenge_methods_supported: ['S256'],
      // oidc-provider puts iss in every authorization response (RFC 9207); saying so makes clients require it.
      authorization_response_iss_parameter_supported: true,
      capabilities: [
        'launch-ehr', 'launch-standalone', 'authorize-post', 'client-public', 'client-confidential-symmetric', 'client-confidential-asymmetric',
        'context-ehr-patient', 'context-ehr-encounter', 'context-standalone-patient', 'context-banner', 'context-style', 'sso-openid-connect',
        'permission-offline', 'permission-online', 'permission-patient', 'permission-user', 'permission-v1', 'permission-v2',
      ],
    };
    return opts.smartConfiguration ? opts.smartConfiguration(doc) : doc;
  };
  const capabilityStatement = () => ({
    resourceType: 'CapabilityStatement', status: 'active', date: '2026-11-01', kind: 'instance', fhirVersion: '4.0.1', format: ['json'],
    software: { name: 'smart-bff sandbox EHR' }, implementation: { description: 'Development EHR', url: fhirBaseUrl },
    rest: [{
      mode: 'server',
      security: {
        service: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/restful-security-service', code: 'SMART-on-FHIR' }] }],
        extension: [{ url: 'http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris', extension: [
          { url: 'authorize', valueUri: `${issuer}/auth` }, { url: 'token', valueUri: `${issuer}/token` },
        ] }],
      },
      resource: SANDBOX_RESOURCE_TYPES.map((type) => ({
        type, interaction: [{ code: 'read' }, { code: 'search-type' }, { code: 'create' }, { code: 'update' }, { code: 'delete' }],
        ...(type === 'Patient' ? { operation: [{ name: 'export', definition: 'http://hl7.org/fhir/uv/bulkdata/OperationDefinition/patient-export' }] } : {}),
        ...(type === 'Group' ? { operation: [{ name: 'export', definition: 'http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export' }] } : {}),
      })),
      operation: [{ name: 'export', definition: 'http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export' }],
    }],
    instantiates: ['http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data'],
  });

  const patients = samplePatients();
  const patientDetails = await Promise.all(patients.map(async (p) => {
    const r = await engine.repo.readResource('Patient', p.id);
    return { ...p, birthDate: (r as { birthDate?: string }).birthDate, gender: (r as { gender?: string }).gender };
  }));
  const launchable = opts.clients.filter((c): c is SandboxClient & { launch_uri: string } => typeof c.launch_uri === 'string');

  const router = express.Router();
  router.use('/auth', provider.callback() as unknown as express.RequestHandler);
  router.use('/interaction', interactionRouter({ provider, interactionPath, fhirBaseUrl, contexts }));
  router.use('/fhir', fhirServerRouter({
    engine, fhirBaseUrl, provider, contexts, smartConfiguration, capabilityStatement,
    ...(opts.bulkExport ? { bulkExport: opts.bulkExport } : {}),
    onRequest: (e) => events.emit('fhir-request', e),
  }));
  const backendPage = async (extra: { registered?: string; problems?: string[]; jwksText?: string; clientIdText?: string } = {}) => renderBackendServices({
    basePath, fhirBaseUrl, tokenEndpoint: `${issuer}/token`, keysDirClientId: KEYS_DIR_CLIENT_ID, keysDir: opts.keysDir, groupId: SAMPLE_GROUP_ID,
    keysDirectory: await backendClients.keysDirectory(), clients: await backendClients.list(), ...extra,
  });
  router.get('/backend-services', async (_req, res) => {
    res.set('cache-control', 'no-store').type('html').send(await backendPage());
  });
  router.get('/backend-services/jwks.json', async (_req, res) => {
    const { keys } = await backendClients.keysDirectory();
    res.set('cache-control', 'no-store').json({ keys });
  });
  router.post('/backend-services/clients', express.urlencoded({ extended: false, limit: '64kb' }), express.json({ limit: '64kb' }), async (req, res) => {
    const body = (req.body ?? {}) as Record<string, unknown>;
    const asJson = Boolean(req.is('application/json'));
    const clientIdText = typeof body.client_id === 'string' ? body.client_id : '';
    let jwks: unknown = body.jwks;
    let jwksText = typeof jwks === 'string' ? jwks : '';
    try {
      if (typeof jwks === 'string') {
        try {
          jwks = JSON.parse(jwks);
        } catch {
          throw new JwksProblem(['the JWKS is not JSON']);
        }
      }
      const { clientId } = backendClients.register({ clientId: clientIdText || undefined, jwks });
      opts.logger?.info({ event: 'sandbox.backend_client.registered', clientId }, 'sandbox: backend client registered');
      if (asJson) {
        res.status(201).json({ client_id: clientId, token_endpoint: `${issuer}/token`, fhir_base_url: fhirBaseUrl, token_endpoint_auth_method: 'private_key_jwt', grant_types: ['client_credentials'], scope: 'system/*.rs (or any system/ scope)' });
      } else {
        res.status(201).set('cache-control', 'no-store').type('html').send(await backendPage({ registered: clientId }));
      }
    } catch (err) {
      if (!(err instanceof JwksProblem)) throw err;
      if (asJson) res.status(400).json({ error: 'invalid_client_metadata', error_description: err.message, problems: err.problems });
      else {
        if (typeof body.jwks !== 'string') jwksText = '';
        res.status(400).set('cache-control', 'no-store').type('html').send(await backendPage({ problems: err.problems, jwksText, clientIdText }));
      }
    }
  });
  router.get('/smart-style.json', (_req, res) => {
    res.json({ color_background: '#f4f6fa', color_highlight: '#6b2c91', color_text: '#1d2330', dim_border_radius: '8px', font_family_body: 'system-ui, sans-serif' });
  });
  router.get('/', async (_req, res) => {
    res.set('cache-control', 'no-store').type('html').send(renderHome({
      basePath, fhirBaseUrl, patients: patientDetails, clients: launchable,
      backend: { clientId: KEYS_DIR_CLIENT_ID, keysDir: opts.keysDir, keys: (await backendClients.keysDirectory()).keys.length, groupId: SAMPLE_GROUP_ID },
    }));
  });
  router.post('/launch', express.urlencoded({ extended: false, limit: '4kb' }), (req, res) => {
    const body = req.body as Record<string, unknown>;
    const client = launchable.find((c) => c.client_id === body.client_id) ?? (launchable.length === 1 ? launchable[0] : undefined);
    const patient = patients.find((p) => p.id === body.patient);
    if (!client || !patient) {
      res.status(400).type('html').send(renderSandboxError('invalid_request', 'Choose a patient and an app.'));
      return;
    }
    const launch = contexts.createLaunch({ patient: patient.id, encounter: `${patient.id}-enc-1`, clientId: client.client_id });
    const target = new URL(client.launch_uri);
    target.searchParams.set('iss', fhirBaseUrl);
    target.searchParams.set('launch', launch);
    res.redirect(303, target.href);
  });

  return {
    handler: router,
    issuer,
    fhirBaseUrl,
    provider,
    patients,
    createLaunch: (context) => contexts.createLaunch(context),
    registerBackendClient: (input) => backendClients.register(input),
    groupId: SAMPLE_GROUP_ID,
    events,
    close: async () => undefined,
  };
}

/** Runs a sandbox on its own HTTP server (127.0.0.1 and an ephemeral port by default), as a separate origin. */
export async function startSandbox(
  opts: Omit<SandboxOptions, 'baseUrl'> & { host?: string; port?: number; path?: string },
): Promise<Sandbox & { url: string }> {
  const server = http.createServer();
  const host = opts.host ?? '127.0.0.1';
  await new Promise<void>((resolve) => server.listen(opts.port ?? 0, host, resolve));
  const path = opts.path ?? '/sandbox';
  const url = `http://${host}:${(server.address() as AddressInfo).port}${path}`;
  const sandbox = await createSandbox({ ...opts, baseUrl: url });
  const app = express();
  app.disable('x-powered-by');
  app.use(path, sandbox.handler);
  server.on('request', app);
  return {
    ...sandbox,
    url,
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}
