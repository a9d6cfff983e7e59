/**
 * What went wrong on the wire, for the requests we send (discovery, token and revocation endpoints, Bulk Data):
 * one reading of the errors that fetch (undici) and openid-client throw. Both wrap the real failure: undici
 * throws `TypeError: fetch failed` with the socket error as its cause, and openid-client wraps a timeout in a
 * ClientError (code OAUTH_TIMEOUT) whose cause is the TimeoutError. So each question looks down the cause chain.
 */

const MAX_DEPTH = 5;

function* causeChain(err: unknown): Generator<unknown> {
  for (let e: unknown = err, i = 0; e && i < MAX_DEPTH; e = (e as { cause?: unknown }).cause, i++) yield e;
}

/**
 * The request ran out of time: an AbortSignal.timeout (a DOMException named TimeoutError), or openid-client's
 * wrapper of one (code OAUTH_TIMEOUT). An abort for another reason (a cancelled job) is not a timeout.
 */
export function isTimeout(err: unknown): boolean {
  for (const e of causeChain(err)) {
    if ((e as Error).name === 'TimeoutError' || (e as { code?: unknown }).code === 'OAUTH_TIMEOUT') return true;
  }
  return false;
}

/** Socket and DNS failures worth another try: nothing was answered. */
const NETWORK_CODES = /^(ECONNRESET|ECONNREFUSED|EPIPE|ETIMEDOUT|EHOSTUNREACH|ENETUNREACH|EAI_AGAIN|ENOTFOUND|UND_ERR_\w+)$/;

/** The socket error's code (ECONNREFUSED, a certificate error, …) from anywhere down the cause chain. */
function socketCode(err: unknown): string | undefined {
  for (const e of causeChain(err)) {
    const c = (e as { code?: unknown }).code;
    if (typeof c === 'string' && /^E[A-Z_]+$|CERT|SIGNED/.test(c)) return c;
  }
  return undefined;
}

/**
 * No answer came back: the connection failed (refused, reset, DNS, TLS) or the body was cut short
 * (undici's `terminated`). Not a timeout (isTimeout), not an HTTP answer.
 */
export function isNetworkError(err: unknown): boolean {
  for (const e of causeChain(err)) {
    if (e instanceof TypeError && /fetch failed|terminated/i.test(e.message)) return true;
    const c = (e as { code?: unknown }).code;
    if (typeof c === 'string' && NETWORK_CODES.test(c)) return true;
  }
  return false;
}

/** A short description for logs and error pages: "timeout", "connection refused", "TLS certificate problem (…)". */
export function describeNetworkError(err: unknown): string {
  if (isTimeout(err)) return 'timeout';
  const code = socketCode(err);
  switch (code) {
    case 'ECONNREFUSED': return 'connection refused';
    case 'ENOTFOUND': case 'EAI_AGAIN': return 'host name not found';
    case 'ECONNRESET': return 'connection reset';
    case 'CERT_HAS_EXPIRED': case 'DEPTH_ZERO_SELF_SIGNED_CERT': case 'UNABLE_TO_VERIFY_LEAF_SIGNATURE': case 'SELF_SIGNED_CERT_IN_CHAIN': return `TLS certificate problem (${code})`;
    default: return code ? `network error (${code})` : 'network error';
  }
}
