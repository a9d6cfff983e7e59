/**
 * Builds an openid-client Configuration for one EHR registration from its validated SMART configuration.
 * A SMART configuration need not carry `issuer` (openid-client requires one): the FHIR base stands in for it,
 * and then the RFC 9207 `iss` authorization response parameter cannot be checked (the callback strips it).
 */
import * as client from 'openid-client';
import type { Registration } from '../config.js';
import type { DiscoveredServer } from './discovery.js';
import { clientAuthFor } from './client-auth.js';

export interface HttpObservation {
  url: string;
  status: number;
  /** The server's Date header, for clock-skew diagnosis. */
  date: string | null;
  durationMs: number;
}

export interface OAuthConfigOptions {
  timeoutMs: number;
  allowInsecureHttp: boolean;
  /** Called after every request openid-client makes, with what is safe to log (never a body). */
  observe?: (o: HttpObservation) => void;
}

export function hasIssuer(server: DiscoveredServer): boolean {
  return typeof server.configuration.issuer === 'string' && server.configuration.issuer.length > 0;
}

export function buildOAuthConfig(server: DiscoveredServer, reg: Registration, opts: OAuthConfigOptions): client.Configuration {
  const smart = server.configuration;
  const metadata: client.ServerMetadata = {
    ...(smart as unknown as client.ServerMetadata),
    issuer: hasIssuer(server) ? smart.issuer! : server.iss,
  };
  if (!hasIssuer(server)) delete (metadata as Record<string, unknown>).authorization_response_iss_parameter_supported;
  const config = new client.Configuration(metadata, reg.clientId, undefined, clientAuthFor(reg, smart.token_endpoint));
  config.timeout = Math.max(1, Math.ceil(opts.timeoutMs / 1000));
  if (opts.allowInsecureHttp && Object.values(smart).some((v) => typeof v === 'string' && v.startsWith('http:'))) {
    client.allowInsecureRequests(config);
  }
  if (smart.jwks_uri && hasIssuer(server)) client.enableNonRepudiationChecks(config);
  const observe = opts.observe;
  const timeoutMs = opts.timeoutMs;
  config[client.customFetch] = async (url, init) => {
    const started = Date.now();
    const signal = init.signal ?? AbortSignal.timeout(timeoutMs);
    const res = await fetch(url, { ...init, signal } as RequestInit);
    observe?.({ url, status: res.status, date: res.headers.get('date'), durationMs: Date.now() - started });
    return res;
  };
  return config;
}
