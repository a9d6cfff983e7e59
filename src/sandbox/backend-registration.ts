/**
 * In development with the sandbox and no backend registration configured, the server gets one named `sandbox`
 * for the sandbox's FHIR base, so `/api/bulk-data` (with ADMIN_TOKEN) exports from the sandbox out of the box:
 * an ES384 key made in memory at startup (never written anywhere) and registered with the sandbox in-process,
 * as an operator would paste its JWKS in an EHR console.
 */
import { generateKeyPairSync } from 'node:crypto';
import { parsePrivateKey } from '../keys.js';
import type { BackendRegistration } from '../backend-services/config.js';
import type { Sandbox } from './index.js';

export const SANDBOX_BACKEND_CLIENT_ID = 'smart-bff-backend';

export async function sandboxBackendRegistration(sandbox: Pick<Sandbox, 'fhirBaseUrl' | 'registerBackendClient'>): Promise<BackendRegistration> {
  const pem = generateKeyPairSync('ec', { namedCurve: 'P-384' }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  const key = await parsePrivateKey(pem);
  sandbox.registerBackendClient({ clientId: SANDBOX_BACKEND_CLIENT_ID, jwks: { keys: [key.publicJwk] } });
  return Object.freeze({ name: 'sandbox', iss: sandbox.fhirBaseUrl, clientId: SANDBOX_BACKEND_CLIENT_ID, key, scope: 'system/*.rs', trustedOrigins: Object.freeze([]) });
}
