/**
 * The sandbox's authorization server: oidc-provider (a certified OpenID Provider) configured to speak SMART:
 * PKCE required, `aud` must be the FHIR base, `launch` resolved to a launch context, SMART v1/v2 scopes bound
 * to the FHIR server as a resource server, refresh tokens for online_access/offline_access (rotated), public,
 * symmetric and private_key_jwt clients, client_credentials, revocation and introspection. The token response
 * carries the SMART context (patient, encounter, need_patient_banner, smart_style_url, fhirContext, tenant).
 */
import type { EventEmitter } from 'node:events';
import { createHash, randomBytes } from 'node:crypto';
import * as jose from 'jose';
import { LRUCache } from 'lru-cache';
import Provider, { errors, type Configuration, type ClientMetadata } from 'oidc-provider';
import type { BackendClients } from './backend-clients.js';
import type { LaunchContextStore } from './launch-context.js';
import { PRACTITIONERS } from './sample-data.js';
import { SMART_RESOURCE_SCOPE } from './scope-check.js';
import { renderSandboxError } from './views.js';

export const OIDC_SCOPES = ['openid', 'offline_access', 'online_access', 'fhirUser', 'profile', 'launch', 'launch/patient', 'launch/encounter'];

export interface SandboxClient {
  client_id: string;
  token_endpoint_auth_method: 'none' | 'client_secret_basic' | 'client_secret_post' | 'private_key_jwt';
  /** private_key_jwt: the one algorithm accepted for this client's assertions (default: any the server enables). */
  token_endpoint_auth_signing_alg?: ClientMetadata['token_endpoint_auth_signing_alg'];
  client_secret?: string;
  jwks?: { keys: Record<string, unknown>[] };
  jwks_uri?: string;
  redirect_uris?: string[];
  grant_types?: string[];
  scope?: string;
  launch_uri?: string;
}

export interface ProviderOptions {
  issuer: string;
  fhirBaseUrl: string;
  styleUrl: string;
  interactionPath: string;
  clients: SandboxClient[];
  contexts: LaunchContextStore;
  events: EventEmitter;
  accessTokenTtlSeconds: number;
  refreshTokenTtlSeconds: number;
  redirectUriPattern?: RegExp;
  /** Backend-services clients whose metadata (keys) is read at request time. */
  backendClients?: BackendClients;
}

const PLACEHOLDER_REDIRECT = 'http://127.0.0.1/callback';

/** Every SMART v1/v2 resource scope for the resource types we serve (granular `?` scopes are not supported). */
function resourceScopeUniverse(): string {
  const types = ['*', 'Patient', 'Observation', 'Condition', 'MedicationRequest', 'Encounter', 'Practitioner', 'AllergyIntolerance', 'Procedure',
    'Immunization', 'DiagnosticReport', 'DocumentReference', 'CarePlan', 'Goal', 'Medication', 'Organization', 'Location', 'Group', 'Binary'];
  const perms = ['read', 'write', '*'];
  const letters = ['c', 'r', 'u', 'd', 's'];
  for (let mask = 1; mask < 32; mask++) perms.push(letters.filter((_, i) => mask & (1 << i)).join(''));
  const out: string[] = [...OIDC_SCOPES];
  for (const level of ['patient', 'user', 'system']) for (const t of types) for (const p of perms) out.push(`${level}/${t}.${p}`);
  return out.join(' ');
}

export async function createProvider(o: ProviderOptions): Promise<Provider> {
  const { privateKey } = await jose.generateKeyPair('RS256', { extractable: true });
  const signingKey = { ...(await jose.exportJWK(privateKey)), kid: 'sandbox-rs256', alg: 'RS256', use: 'sig' };
  const universe = resourceScopeUniverse();

  const clients: ClientMetadata[] = o.clients.map((c) => {
    const grants = c.grant_types ?? ['authorization_code', 'refresh_token'];
    const code = grants.includes('authorization_code');
    return {
      client_id: c.client_id,
      ...(c.client_secret ? { client_secret: c.client_secret } : {}),
      token_endpoint_auth_method: c.token_endpoint_auth_method,
      ...(c.token_endpoint_auth_signing_alg ? { token_endpoint_auth_signing_alg: c.token_endpoint_auth_signing_alg } : {}),
      ...(c.jwks ? { jwks: c.jwks as ClientMetadata['jwks'] } : {}),
      ...(c.jwks_uri ? { jwks_uri: c.jwks_uri } : {}),
      grant_types: grants,
      response_types: code ? ['code'] : [],
      redirect_uris: code ? (c.redirect_uris?.length ? c.redirect_uris : [PLACEHOLDER_REDIRECT]) : [],
      ...(c.scope ? { scope: c.scope } : {}),
    };
  });

  const configuration: Configuration = {
    clients,
    jwks: { keys: [signingKey as jose.JWK] } as Configuration['jwks'],
    cookies: { keys: [randomBytes(32).toString('hex')] },
    pkce: { required: () => true },
    scopes: OIDC_SCOPES,
    claims: { openid: ['sub'], fhirUser: ['fhirUser'], profile: ['name', 'given_name', 'family_name'] },
    conformIdTokenClaims: false,
    responseTypes: ['code'],
    clientAuthMethods: ['none', 'client_secret_basic', 'client_secret_post', 'private_key_jwt'],
    enabledJWA: { clientAuthSigningAlgValues: ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512'] },
    extraParams: {
      aud(ctx, value) {
        if (value === undefined) throw new errors.InvalidRequest('aud is required: the FHIR base URL the app wants to access');
        if (value !== o.fhirBaseUrl) throw new errors.InvalidRequest(`aud does not match this EHR's FHIR base URL (${o.fhirBaseUrl})`);
      },
      launch(ctx, value) {
        const scopes = String(ctx.oidc.params?.scope ?? '').split(' ');
        if (value === undefined && scopes.includes('launch')) throw new errors.InvalidRequest('the launch scope requires the launch parameter');
        if (value !== undefined && !o.contexts.resolveLaunch(String(value))) throw new errors.InvalidRequest('unknown or expired launch code');
      },
    },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: { enabled: true },
      revocation: { enabled: true },
      userinfo: { enabled: true },
      rpInitiatedLogout: { enabled: false },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => o.fhirBaseUrl,
        useGrantedResource: () => true,
        getResourceServerInfo: (ctx, resource, client) => {
          if (resource !== o.fhirBaseUrl) throw new errors.InvalidTarget();
          // A backend services client (client_credentials only) gets system-level access, as at a real EHR.
          if (client.grantTypes?.length && client.grantTypes.every((g) => g === 'client_credentials')) {
            const other = String(ctx.oidc.params?.scope ?? '').split(' ').filter((s) => SMART_RESOURCE_SCOPE.test(s) && !s.startsWith('system/'));
            if (other.length) throw new errors.InvalidScope('a backend services client may only ask for system/ scopes', other[0]!);
          }
          return { scope: universe, audience: o.fhirBaseUrl, accessTokenFormat: 'opaque', accessTokenTTL: o.accessTokenTtlSeconds };
        },
      },
    },
    async findAccount(_ctx, id) {
      const p = PRACTITIONERS.find((x) => x.id === id);
      if (!p) return undefined;
      return {
        accountId: id,
        async claims() {
          return { sub: id, fhirUser: `${o.fhirBaseUrl}/Practitioner/${id}`, name: `${p.prefix} ${p.given.join(' ')} ${p.family}`, given_name: p.given[0], family_name: p.family };
        },
      };
    },
    issueRefreshToken: async (_ctx, client, code) => client.grantTypeAllowed('refresh_token') && (code.scopes.has('offline_access') || code.scopes.has('online_access')),
    rotateRefreshToken: true,
    // Several launches of one app in one browser (two tabs, two patients) each keep their own grant: tokens are
    // not bound to the sign-in session, whose per-client grant the next launch replaces.
    expiresWithSession: async () => false,
    loadExistingGrant: async (ctx) => {
      const grantId = ctx.oidc.result?.consent?.grantId;
      return grantId ? ctx.oidc.provider.Grant.find(grantId) : undefined;
    },
    ttl: {
      AccessToken: o.accessTokenTtlSeconds,
      ClientCredentials: o.accessTokenTtlSeconds,
      AuthorizationCode: 60,
      IdToken: 3600,
      RefreshToken: o.refreshTokenTtlSeconds,
      Grant: o.refreshTokenTtlSeconds,
      Interaction: 600,
      Session: 8 * 3600,
    },
    interactions: { url: (_ctx, interaction) => `${o.interactionPath}/${interaction.uid}` },
    renderError: async (ctx, out) => {
      ctx.type = 'html';
      ctx.body = renderSandboxError(out.error ?? 'error', out.error_description);
    },
  };

  const provider = new Provider(o.issuer, configuration);

  if (o.backendClients) {
    // Backend clients are looked up at request time, so a key generated (or a JWKS registered) a second ago is
    // known at once: their metadata comes from BackendClients, and a Client is built per distinct metadata.
    const backend = o.backendClients;
    const staticFind = provider.Client.find.bind(provider.Client);
    const ClientClass = provider.Client as unknown as new (metadata: ClientMetadata) => InstanceType<typeof provider.Client>;
    const built = new LRUCache<string, InstanceType<typeof provider.Client>>({ max: 200 }); // a cache of built clients
    provider.Client.find = async (id: string) => {
      const metadata = await backend.metadataFor(id);
      if (!metadata) return staticFind(id);
      const key = createHash('sha256').update(JSON.stringify(metadata)).digest('base64url');
      let client = built.get(key);
      if (!client) {
        client = new ClientClass(metadata);
        built.set(key, client);
      }
      return client;
    };
  }

  if (o.redirectUriPattern) {
    const pattern = o.redirectUriPattern;
    const original = provider.Client.prototype.redirectUriAllowed;
    provider.Client.prototype.redirectUriAllowed = function redirectUriAllowed(this: InstanceType<typeof provider.Client>, value: string) {
      return pattern.test(value) || original.call(this, value);
    };
  }

  // SMART context in the token response, and events for tests that capture real secret values (token requests and
  // responses, revocation requests).
  provider.use(async (ctx, next) => {
    await next();
    if (ctx.method === 'POST' && ctx.path.endsWith('/token/revocation')) {
      const params = (ctx.oidc?.params ?? {}) as Record<string, unknown>;
      o.events.emit('revocation', { token: params.token, token_type_hint: params.token_type_hint, client_id: ctx.oidc?.client?.clientId, status: ctx.status });
      return;
    }
    if (ctx.method !== 'POST' || !ctx.path.endsWith('/token')) return;
    const params = (ctx.oidc?.params ?? {}) as Record<string, unknown>;
    o.events.emit('token-request', {
      grant_type: params.grant_type, code: params.code, code_verifier: params.code_verifier, refresh_token: params.refresh_token,
      redirect_uri: params.redirect_uri, client_id: ctx.oidc?.client?.clientId, client_assertion: params.client_assertion, scope: params.scope,
      status: ctx.status,
    });
    const body = ctx.body as Record<string, unknown> | undefined;
    if (body?.error === 'invalid_client' && o.backendClients && typeof params.client_assertion === 'string') {
      // Say which keys the sandbox knows for this client when the assertion's kid is not one of them.
      const clientId = ctx.oidc?.client?.clientId ?? (typeof params.client_id === 'string' ? params.client_id : undefined);
      let kid: string | undefined;
      try {
        kid = jose.decodeProtectedHeader(params.client_assertion).kid;
      } catch {
        kid = undefined;
      }
      const why = clientId ? await o.backendClients.unknownKid(clientId, kid) : undefined;
      if (why) body.error_description = why;
    }
    if (ctx.status === 200 && body && typeof body.access_token === 'string') {
      const at = await provider.AccessToken.find(body.access_token);
      const context = at?.grantId ? o.contexts.forGrant(at.grantId) : undefined;
      if (context?.patient) {
        body.patient = context.patient;
        body.need_patient_banner = true;
      }
      if (context?.encounter) {
        body.encounter = context.encounter;
        body.fhirContext = [{ reference: `Encounter/${context.encounter}` }];
      }
      if (at?.grantId) {
        body.smart_style_url = o.styleUrl;
        body.tenant = 'sandbox';
      }
    }
    o.events.emit('token-response', {
      status: ctx.status, access_token: body?.access_token, refresh_token: body?.refresh_token, id_token: body?.id_token, error: body?.error,
    });
  });

  return provider;
}

export { SMART_RESOURCE_SCOPE };
