/**
 * Behind a TLS-terminating router (Heroku, App Engine, a load balancer) without TRUST_PROXY, the app sees every
 * request as plain http: express-session never sets the Secure session cookie, the launch cookie is withheld the
 * same way, and every launch ends at `session_cookie_missing`. The router's `X-Forwarded-Proto: https` on a
 * plain-http request, with an https PUBLIC_URL and trust proxy off, shows exactly that: say so once, naming the
 * variable to set. The "said it" flag belongs to the app instance (one per process), not to the module.
 */
import type { IncomingMessage } from 'node:http';
import type { TLSSocket } from 'node:tls';
import type { Config } from '../config.js';
import type { Logger } from '../log.js';

export function trustProxyCheck(config: Pick<Config, 'trustProxy' | 'publicUrl'>, logger: Logger): (req: IncomingMessage) => void {
  let warned = !config.publicUrl.startsWith('https:') || (config.trustProxy !== false && config.trustProxy !== 0);
  return (req) => {
    if (warned) return;
    const proto = req.headers['x-forwarded-proto'];
    if (typeof proto !== 'string' || proto.split(',')[0]!.trim().toLowerCase() !== 'https' || (req.socket as TLSSocket).encrypted) return;
    warned = true;
    logger.warn(
      { event: 'config.trust_proxy_missing', forwarded_proto: 'https', trust_proxy: config.trustProxy },
      'TRUST_PROXY is not set, but requests arrive through a TLS-terminating proxy (X-Forwarded-Proto: https) while the app sees plain http: '
        + 'the Secure session and launch cookies are never set, so every launch ends at session_cookie_missing. '
        + 'Set TRUST_PROXY to the number of proxies in front of the app (Heroku, App Engine: TRUST_PROXY=1).',
    );
  };
}
