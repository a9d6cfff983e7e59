/**
 * The Redis connection, the way the platforms give Redis: redis:// or rediss:// (TLS verified against a CA file,
 * the public CAs, or, for Heroku Redis's self-signed certificates, not at all), SNI, and a connect timeout.
 *
 * The connection is made in the background and never blocks startup: the server listens whatever Redis does.
 * Commands fail at once while Redis is unreachable (no offline queue), so requests that need a session get a
 * clear 503, and the client reconnects by itself with backoff. `check()` says whether Redis answers and, when it
 * does not, why, in a short reason that is safe to show on /readyz. Each new problem is logged once, with the
 * setting that fixes it when it is one (a certificate error does not go away by retrying), not once per retry.
 */
import { ClientClosedError, ClientOfflineError, ConnectionTimeoutError, createClient, SocketClosedUnexpectedlyError } from 'redis';
import type { RedisSettings } from '../config.js';
import type { Logger } from '../log.js';

/** Backoff between connection attempts: 100 ms doubling up to 3 s. */
export function reconnectDelayMs(retries: number): number {
  return Math.min(100 * 2 ** Math.min(retries, 5), 3000);
}

/** Socket options for node-redis: `tls` must agree with the URL's scheme (node-redis refuses a mismatch). */
export function redisSocketOptions(s: RedisSettings) {
  const common = { connectTimeout: s.connectTimeoutMs, reconnectStrategy: (retries: number) => reconnectDelayMs(retries) };
  if (!s.tls) return common;
  return {
    ...common,
    tls: true as const,
    rejectUnauthorized: s.rejectUnauthorized,
    ...(s.ca ? { ca: s.ca } : {}),
    ...(s.servername ? { servername: s.servername } : {}),
  };
}

function makeClient(s: RedisSettings) {
  return createClient({ url: s.url, disableOfflineQueue: true, socket: redisSocketOptions(s) });
}
export type RedisClient = ReturnType<typeof makeClient>;

export interface RedisProblem {
  /** Short and safe to show on /readyz and in logs: no URL, no password, no server reply beyond its code. */
  reason: string;
  /** A setting is wrong: retrying will not help until the configuration changes. */
  permanent: boolean;
  /** More detail for the log line only. */
  hint?: string;
}

const CERT_UNTRUSTED = new Set([
  'SELF_SIGNED_CERT_IN_CHAIN', 'DEPTH_ZERO_SELF_SIGNED_CERT', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'CERT_UNTRUSTED', 'CERT_SIGNATURE_FAILURE', 'CERT_CHAIN_TOO_LONG', 'INVALID_CA',
]);
const CERT_DATES = new Set(['CERT_HAS_EXPIRED', 'CERT_NOT_YET_VALID']);

/** What went wrong, in words an operator can act on. */
export function describeRedisError(err: unknown, s: Pick<RedisSettings, 'tls' | 'connectTimeoutMs' | 'caFile'>): RedisProblem {
  const e = (err ?? {}) as Error & { code?: string };
  const code = typeof e.code === 'string' ? e.code : undefined;
  const name = e.name ?? '';
  const message = typeof e.message === 'string' ? e.message : '';
  if (code && CERT_UNTRUSTED.has(code)) {
    if (s.caFile) {
      return { reason: `TLS certificate problem (${code}): REDIS_TLS_CA_FILE is not the CA that signed the server's certificate`, permanent: true, hint: `REDIS_TLS_CA_FILE=${s.caFile}` };
    }
    return {
      reason: `TLS certificate problem (${code}): set REDIS_TLS_REJECT_UNAUTHORIZED=false or REDIS_TLS_CA_FILE`,
      permanent: true,
      hint: "Heroku Redis uses self-signed certificates: set REDIS_TLS_REJECT_UNAUTHORIZED=false. A Redis whose CA you have (Memorystore's server CA): set REDIS_TLS_CA_FILE to that CA's PEM file. See docs/deploy.md",
    };
  }
  if (code && CERT_DATES.has(code)) return { reason: `TLS certificate problem (${code}): the Redis server's certificate is outside its validity period`, permanent: true };
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') {
    return { reason: `TLS certificate problem (${code}): the certificate does not name the REDIS_URL host; set REDIS_TLS_SERVERNAME to a name it lists`, permanent: true, hint: message };
  }
  if (code?.startsWith('ERR_SSL_') || code?.startsWith('ERR_TLS_')) {
    return { reason: `TLS handshake failed (${code}): does this Redis speak TLS? rediss:// is TLS, redis:// is not`, permanent: true };
  }
  if (/^(WRONGPASS|NOAUTH|NOPERM)\b/.test(message) || /^ERR (AUTH|invalid password|Client sent AUTH)/i.test(message)) {
    return { reason: `authentication failed (${message.split(' ')[0]}): check the user name and password in REDIS_URL`, permanent: true };
  }
  if (err instanceof ConnectionTimeoutError) {
    // a plain Redis reached with rediss:// reads the TLS hello as a command and waits: that is a timeout too
    return { reason: `timeout: no connection within REDIS_CONNECT_TIMEOUT_MS (${s.connectTimeoutMs} ms)${s.tls ? ' (if this Redis does not speak TLS, use redis://)' : ''}`, permanent: false };
  }
  if (code === 'ECONNREFUSED') return { reason: 'connection refused', permanent: false };
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') return { reason: `host not found (${code})`, permanent: false };
  if (code === 'EHOSTUNREACH' || code === 'ENETUNREACH' || code === 'ETIMEDOUT') return { reason: `host unreachable (${code})`, permanent: false };
  if (code === 'ECONNRESET' || err instanceof SocketClosedUnexpectedlyError) {
    return { reason: `connection closed by the server${s.tls ? '' : ' (if it requires TLS, use rediss://)'}`, permanent: false };
  }
  if (err instanceof ClientOfflineError || err instanceof ClientClosedError) return { reason: 'not connected', permanent: false };
  return { reason: `error (${code ?? (e.constructor?.name || name || 'unknown')})`, permanent: false };
}

export class RedisConnection {
  readonly client: RedisClient;
  /** Why Redis is not ready; undefined once it is. */
  #problem: RedisProblem | undefined = { reason: 'connecting', permanent: false };
  #logged: string | undefined;
  #wasReady = false;
  #closing = false;

  constructor(private readonly settings: RedisSettings, private readonly logger: Logger) {
    this.client = makeClient(settings);
    this.client.on('error', (err: unknown) => this.#onError(err));
    this.client.on('ready', () => this.#onReady());
  }

  /**
   * Starts connecting in the background. The promise says when the first attempt has settled (connected, or
   * failed: refused, timed out, certificate refused) and never rejects: the caller may wait for it so that a
   * reachable Redis is ready before the first request, without ever waiting longer than one attempt.
   */
  start(): Promise<void> {
    const u = new URL(this.settings.url);
    const verify = !this.settings.tls ? undefined : !this.settings.rejectUnauthorized ? 'off' : this.settings.ca ? 'ca-file' : 'public-cas';
    this.logger.info(
      { event: 'redis.connecting', host: u.hostname, port: u.port || '6379', tls: this.settings.tls, ...(verify ? { verify } : {}), ...(this.settings.servername ? { servername: this.settings.servername } : {}), connectTimeoutMs: this.settings.connectTimeoutMs },
      `redis: connecting to ${u.hostname}:${u.port || '6379'}${this.settings.tls ? ` over TLS (certificate check: ${verify})` : ''}`,
    );
    const firstAttempt = new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.client.off('ready', done).off('error', done);
        resolve();
      };
      // an attempt ends within connectTimeout (TCP and TLS); the margin covers the AUTH/HELLO that follows
      const timer = setTimeout(done, this.settings.connectTimeoutMs + 1000);
      this.client.once('ready', done).once('error', done);
    });
    // connect() settles when the first connection is ready; until then the client retries by itself.
    this.client.connect().catch((err: unknown) => {
      if (!this.#closing) this.#onError(err);
    });
    return firstAttempt;
  }

  /** 'ok', or 'unreachable: <reason>'. */
  async check(timeoutMs = 2000): Promise<string> {
    if (!this.client.isReady) return `unreachable: ${this.#problem?.reason ?? 'connecting'}`;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(Object.assign(new Error('ping timeout'), { name: 'PingTimeout' })), timeoutMs);
    });
    try {
      await Promise.race([this.client.ping(), timeout]);
      return 'ok';
    } catch (err) {
      const p = (err as Error).name === 'PingTimeout' ? { reason: `no answer to PING within ${timeoutMs} ms`, permanent: false } : describeRedisError(err, this.settings);
      return `unreachable: ${p.reason}`;
    } finally {
      clearTimeout(timer);
    }
  }

  async close(): Promise<void> {
    this.#closing = true;
    if (this.client.isReady) await this.client.close().catch(() => this.client.destroy());
    else if (this.client.isOpen) this.client.destroy();
  }

  #onError(err: unknown): void {
    const problem = describeRedisError(err, this.settings);
    this.#problem = problem;
    if (this.#logged === problem.reason) return; // once per distinct problem, not once per retry
    this.#logged = problem.reason;
    const fields = { event: 'redis.unreachable', reason: problem.reason, permanent: problem.permanent, ...(errorCode(err) ? { errorCode: errorCode(err) } : {}), ...(problem.hint ? { hint: problem.hint } : {}) };
    if (problem.permanent) {
      this.logger.error(fields, `redis: ${problem.reason}.${problem.hint ? ` ${problem.hint}.` : ''} Retrying will not help until the configuration changes; requests that need a session get 503 and /readyz answers 503 meanwhile`);
    } else {
      this.logger.error(fields, `redis: unreachable (${problem.reason}); requests that need a session get 503 until it is back; reconnecting by itself`);
    }
  }

  #onReady(): void {
    this.#problem = undefined;
    this.#logged = undefined;
    this.logger.info({ event: 'redis.ready', restored: this.#wasReady }, this.#wasReady ? 'redis: connection restored' : 'redis: connected');
    this.#wasReady = true;
  }
}

function errorCode(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | undefined)?.code;
  return typeof code === 'string' ? code : undefined;
}
