/**
 * Typed application errors with stable codes. One error handler (error-handler.ts) turns them into an
 * HTML page for people or JSON for programs. `expose` is false for 5xx: their message never reaches a client.
 */
export const ErrorCode = {
  BAD_REQUEST: 'bad_request',
  LAUNCH_PARAMS_MISSING: 'launch_params_missing',
  ISS_NOT_ALLOWED: 'iss_not_allowed',
  DISCOVERY_FAILED: 'discovery_failed',
  DISCOVERY_INVALID: 'discovery_invalid',
  DISCOVERY_RATE_LIMITED: 'discovery_rate_limited',
  STATE_MISSING: 'state_missing',
  STATE_UNKNOWN: 'state_unknown',
  STATE_EXPIRED: 'state_expired',
  COOKIE_MISSING: 'session_cookie_missing',
  AUTHORIZATION_ERROR: 'authorization_error',
  AUTHORIZATION_RESPONSE_INVALID: 'authorization_response_invalid',
  TOKEN_EXCHANGE_FAILED: 'token_exchange_failed',
  TOKEN_RESPONSE_INVALID: 'token_response_invalid',
  TOKEN_ENDPOINT_UNAVAILABLE: 'token_endpoint_unavailable',
  ID_TOKEN_INVALID: 'id_token_invalid',
  PATIENT_CONTEXT_MISSING: 'patient_context_missing',
  CSRF_HEADER_REQUIRED: 'csrf_header_required',
  CROSS_SITE_REQUEST: 'cross_site_request',
  NOT_AUTHENTICATED: 'not_authenticated',
  CONTEXT_REQUIRED: 'context_required',
  CONTEXT_UNKNOWN: 'context_unknown',
  SESSION_EXPIRED: 'session_expired',
  SESSION_STORE_UNAVAILABLE: 'session_store_unavailable',
  NOT_FOUND: 'not_found',
  RATE_LIMITED: 'rate_limited',
  JOB_NOT_RUNNING: 'job_not_running',
  METHOD_NOT_ALLOWED: 'method_not_allowed',
  PAYLOAD_TOO_LARGE: 'payload_too_large',
  REQUEST_BODY_NOT_ALLOWED: 'request_body_not_allowed',
  UPSTREAM_TIMEOUT: 'upstream_timeout',
  UPSTREAM_UNAVAILABLE: 'upstream_unavailable',
  INTERNAL: 'internal_error',
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

export interface AppErrorOptions {
  /** What the person should do next (shown on the error page and in JSON as `hint`). */
  hint?: string;
  /** Likely causes that the data supports (diagnosis of invalid_grant and friends). */
  causes?: string[];
  /** The authorization server's own error code, e.g. `invalid_grant`. */
  oauthError?: string;
  /** Safe, escaped-on-render detail from the remote party (error_description); never a secret. */
  remoteDescription?: string;
  /** Offer a link to start again (relaunch). */
  relaunch?: boolean;
  /** The HTTP status a remote server answered, when that is the failure (lets callers tell 404 from 503). */
  upstreamStatus?: number;
  cause?: unknown;
}

export class AppError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly expose: boolean;
  readonly hint: string | undefined;
  readonly causes: readonly string[];
  readonly oauthError: string | undefined;
  readonly remoteDescription: string | undefined;
  readonly relaunch: boolean;
  readonly upstreamStatus: number | undefined;

  constructor(code: ErrorCode, status: number, message: string, opts: AppErrorOptions = {}) {
    super(message);
    this.name = 'AppError';
    this.code = code;
    this.status = status;
    this.expose = status < 500 || status === 502 || status === 503 || status === 504;
    this.hint = opts.hint;
    this.causes = opts.causes ?? [];
    this.oauthError = opts.oauthError;
    this.remoteDescription = opts.remoteDescription;
    this.relaunch = opts.relaunch ?? false;
    this.upstreamStatus = opts.upstreamStatus;
    // The underlying error may carry a Response with tokens in its body: keep it off enumerable props.
    if (opts.cause !== undefined) Object.defineProperty(this, 'cause', { value: opts.cause, enumerable: false });
  }
}

export const isAppError = (e: unknown): e is AppError => e instanceof AppError;

/**
 * A failure of the session store (or the pending-launch store beside it): the only error that becomes
 * `503 session_store_unavailable` and counts as a store error. Store adapters are wrapped so that every failure
 * they report is one of these (session-middleware.ts), so nothing else can pass for a store outage.
 */
export class StoreError extends AppError {
  /** The store operation that failed (get, set, touch, destroy, …). */
  readonly operation: string;
  constructor(operation: string, cause?: unknown) {
    super(ErrorCode.SESSION_STORE_UNAVAILABLE, 503, 'The session store is unavailable right now. Try again in a moment.', { cause });
    this.name = 'StoreError';
    this.operation = operation;
  }
}
