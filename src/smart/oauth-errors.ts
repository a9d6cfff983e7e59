/**
 * What the token endpoint said when it refused a request, whichever way openid-client reports it: a JSON error
 * body (ResponseBodyError) or a 401 with a WWW-Authenticate challenge (WWWAuthenticateChallengeError).
 * Only the safe fields: error, error_description, error_uri, status and the Date header.
 */
import * as client from 'openid-client';

export interface OAuthErrorDetails {
  error: string;
  errorDescription: string | undefined;
  errorUri: string | undefined;
  status: number;
  date: string | null;
}

export function oauthErrorDetails(err: unknown): OAuthErrorDetails | undefined {
  if (err instanceof client.ResponseBodyError) {
    const body = (err.cause ?? {}) as Record<string, unknown>;
    return {
      error: err.error,
      errorDescription: err.error_description,
      errorUri: typeof body.error_uri === 'string' ? body.error_uri : undefined,
      status: err.status,
      date: err.response.headers.get('date'),
    };
  }
  if (err instanceof client.WWWAuthenticateChallengeError) {
    const params = err.cause[0]?.parameters ?? {};
    return {
      error: params.error ?? (err.status === 401 ? 'invalid_client' : 'unauthorized'),
      errorDescription: params.error_description,
      errorUri: params.error_uri,
      status: err.status,
      date: err.response.headers.get('date'),
    };
  }
  return undefined;
}
