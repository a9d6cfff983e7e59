/**
 * The launch registration of the built-in sandbox EHR, as the server adds it in development (public client
 * `smart-bff-dev`, the default scopes, the sandbox's FHIR base under PUBLIC_URL). A light module (no
 * oidc-provider), so that `smart-bff doctor` checks the same registration the server would serve.
 */
import { DEFAULT_SCOPE, type Config, type Registration } from '../config.js';

export const SANDBOX_CLIENT_ID = 'smart-bff-dev';

/** Where the server mounts the sandbox. */
export function sandboxBaseUrl(config: Pick<Config, 'publicUrl'>): string {
  return `${config.publicUrl}/sandbox`;
}

/** The sandbox's FHIR base (the `iss` of its launches). */
export function sandboxFhirBaseUrl(config: Pick<Config, 'publicUrl'>): string {
  return `${sandboxBaseUrl(config)}/fhir`;
}

export function sandboxLaunchRegistration(fhirBaseUrl: string): Registration {
  return Object.freeze({
    name: 'sandbox', iss: Object.freeze([fhirBaseUrl]), clientId: SANDBOX_CLIENT_ID, clientType: 'public', scope: DEFAULT_SCOPE, standaloneScope: DEFAULT_SCOPE,
  });
}
