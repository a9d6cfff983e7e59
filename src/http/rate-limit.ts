/**
 * Rate limits for the launch endpoints (/launch, /login, /callback), per client IP (behind the router that
 * `trust proxy` names), shared through Redis when it is configured so that several instances count together.
 */
import { rateLimit } from 'express-rate-limit';
import { RedisStore } from 'rate-limit-redis';
import type { RequestHandler } from 'express';
import { AppError, ErrorCode } from './errors.js';
import type { RedisClient } from '../session/redis-store.js';

export function launchRateLimit(perMinute: number, redis?: RedisClient): RequestHandler {
  return rateLimit({
    windowMs: 60_000,
    limit: perMinute,
    standardHeaders: 'draft-7',
    legacyHeaders: false,
    ...(redis ? { store: new RedisStore({ prefix: 'smart-bff:rl:', sendCommand: (...args: string[]) => redis.sendCommand(args) }) } : {}),
    // Redis down must not lock everyone out of launching: let the request through (the session store answers 503).
    passOnStoreError: true,
    handler: (_req, _res, next) => next(new AppError(ErrorCode.RATE_LIMITED, 429, 'Too many launch attempts from this address. Wait a minute and try again.')),
  });
}
