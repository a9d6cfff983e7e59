/**
 * Where a Bulk Data client may send its access token: the origin of the FHIR server the token was issued for,
 * plus the origins an operator trusts explicitly (BULK_DATA_TRUSTED_ORIGINS, `--trusted-origin`): a separate
 * file host that belongs to the FHIR server. Nowhere else, whatever a manifest or a redirect names.
 */

export const TRUSTED_ORIGINS_SETTING = 'BULK_DATA_TRUSTED_ORIGINS (CLI: --trusted-origin)';

/** Parses one origin ("https://files.example.org", an optional trailing slash); a problem string when it is not one. */
export function parseOrigin(value: string, allowInsecureHttp: boolean): { origin: string } | { problem: string } {
  let u: URL;
  try {
    u = new URL(value.trim());
  } catch {
    return { problem: `not a URL: ${JSON.stringify(value)} (expected an origin such as https://files.example.org)` };
  }
  if (u.protocol !== 'https:' && u.protocol !== 'http:') return { problem: `not an http(s) origin: ${JSON.stringify(value)}` };
  if (u.username || u.password || u.search || u.hash || (u.pathname !== '/' && u.pathname !== '')) {
    return { problem: `an origin is scheme://host[:port] with no path, query or credentials: ${JSON.stringify(value)} (use ${u.origin})` };
  }
  if (u.protocol === 'http:' && !allowInsecureHttp) return { problem: `${u.origin} is not https` };
  return { origin: u.origin };
}

/** Comma-separated lists of origins; every problem reported. */
export function parseTrustedOrigins(values: readonly string[], allowInsecureHttp: boolean): { origins: string[]; problems: string[] } {
  const origins: string[] = [];
  const problems: string[] = [];
  for (const v of values.flatMap((s) => s.split(',')).map((s) => s.trim()).filter(Boolean)) {
    const r = parseOrigin(v, allowInsecureHttp);
    if ('problem' in r) problems.push(r.problem);
    else if (!origins.includes(r.origin)) origins.push(r.origin);
  }
  return { origins, problems };
}

export class TokenOrigins {
  readonly fhirOrigin: string;
  private readonly allowed: ReadonlySet<string>;

  constructor(fhirBaseUrl: string, readonly trusted: readonly string[] = []) {
    this.fhirOrigin = new URL(fhirBaseUrl).origin;
    this.allowed = new Set([this.fhirOrigin, ...trusted.map((o) => new URL(o).origin)]);
  }

  allows(url: string | URL): boolean {
    return this.allowed.has(new URL(url).origin);
  }

  /** Why a URL may not receive the token, in words a user can act on. */
  refusal(url: string | URL, what: string): string {
    const origin = new URL(url).origin;
    return `${what} is on ${origin}, but the access token is only sent to the FHIR server's origin (${this.fhirOrigin})`
      + `${this.trusted.length ? ` and to ${this.trusted.join(', ')}` : ''}. If ${origin} is a file host that belongs to the FHIR server, `
      + `add it to ${TRUSTED_ORIGINS_SETTING}; otherwise the token must not go there.`;
  }
}
