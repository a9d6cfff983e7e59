/**
 * The request id (X-Request-Id), the same for the pages (the access log sets req.id and req.log) and the FHIR proxy
 * (fhir-route.ts), and query parameters read safely.
 */
import { randomUUID } from 'node:crypto';
import type { Request } from 'express';
import type { Logger } from '../log.js';

declare module 'express-serve-static-core' {
  interface Request {
    id: string;
    log: Logger;
  }
}

const SAFE_ID = /^[A-Za-z0-9._-]{8,64}$/;

/** The caller's X-Request-Id when it is a plain token, else a new UUID. */
export function requestIdFor(incoming: string | string[] | undefined): string {
  return typeof incoming === 'string' && SAFE_ID.test(incoming) ? incoming : randomUUID();
}

/** A single string query parameter, or undefined (arrays and objects are refused as missing). */
export function queryString(req: Request, name: string): string | undefined {
  const v = (req.query as Record<string, unknown>)[name];
  return typeof v === 'string' ? v : undefined;
}
