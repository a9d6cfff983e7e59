/**
 * Access logs with pino-http: one line per request carrying its request id (every other line logged through
 * req.log carries it too). URLs are logged with secret-bearing query values redacted (the callback's code and
 * state, the launch code), never with headers.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { pinoHttp } from 'pino-http';
import type { RequestHandler } from 'express';
import type { Logger } from '../log.js';
import { requestIdFor } from './request-context.js';

const SECRET_PARAMS = new Set(['code', 'state', 'launch', 'session_state', 'code_verifier', 'access_token', 'id_token', 'refresh_token', 'client_secret', 'assertion']);
const QUIET = /^\/(healthz|readyz|metrics|static\/|favicon\.ico)/;

export function redactUrl(url: string | undefined): string {
  if (!url) return '';
  const q = url.indexOf('?');
  if (q === -1) return url;
  const params = new URLSearchParams(url.slice(q + 1));
  for (const key of [...params.keys()]) if (SECRET_PARAMS.has(key.toLowerCase())) params.set(key, '[redacted]');
  return `${url.slice(0, q)}?${params.toString()}`;
}

export function accessLog(logger: Logger): RequestHandler {
  return pinoHttp({
    logger,
    genReqId: (req: IncomingMessage, res: ServerResponse) => {
      const id = requestIdFor(req.headers['x-request-id']);
      res.setHeader('X-Request-Id', id);
      return id;
    },
    customAttributeKeys: { reqId: 'requestId' },
    quietReqLogger: true,
    autoLogging: { ignore: (req: IncomingMessage) => QUIET.test(req.url ?? '') },
    customLogLevel: (_req: IncomingMessage, res: ServerResponse, err?: Error) => (err || res.statusCode >= 500 ? 'error' : res.statusCode >= 400 ? 'info' : 'info'),
    customSuccessMessage: (req: IncomingMessage, res: ServerResponse) => `${req.method} ${redactUrl(req.url).split('?')[0]} ${res.statusCode}`,
    customErrorMessage: (req: IncomingMessage, res: ServerResponse) => `${req.method} ${redactUrl(req.url).split('?')[0]} ${res.statusCode}`,
    serializers: {
      req: (req: { method?: string; url?: string; raw?: IncomingMessage }) => ({ method: req.method, url: redactUrl((req.raw as IncomingMessage & { originalUrl?: string } | undefined)?.originalUrl ?? req.url) }),
      res: (res: { statusCode?: number }) => ({ statusCode: res.statusCode }),
      err: (err: Error) => ({ type: err?.name, message: err?.message }),
    },
    wrapSerializers: false,
  }) as unknown as RequestHandler;
}
