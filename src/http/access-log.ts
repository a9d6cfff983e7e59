/**
 * Access logs with pino-http: one line per request carrying its request id (every other line logged through
 * req.log carries it too). URLs are logged with secret-bearing query values redacted (the callback's code and
 * state, the launch code; log.ts's redactUrl), never with headers.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { pinoHttp } from 'pino-http';
import type { RequestHandler } from 'express';
import { redactUrl, type Logger } from '../log.js';
import { requestIdFor } from './request-context.js';

const QUIET = /^\/(healthz|readyz|metrics|static\/|favicon\.ico)/;

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
