/**
 * Rate limits for the launch endpoints (/launch, /launch/continue, /login, /callback: one budget), per client IP
 * (behind the router that `trust proxy` names), shared through Redis when it is configured so that several instances count together.
 *
 * rate-limit-redis loads its Lua scripts once, when the limiter is created, and keeps the promise: with Redis
 * down at boot that promise stays rejected and the limit would be off for the life of the process. A script
 * that cannot be loaded therefore stands for an unknown SHA: once Redis is back, EVALSHA answers NOSCRIPT and
 * the store loads the script again.
 */
import { rateLimit } from 'express-rate-limit';
import { RedisStore, type RedisReply } from 'rate-limit-redis';
import type { RequestHandler } from 'express';
import { AppError, ErrorCode } from './errors.js';
import type { RedisClient } from '../session/redis-client.js';

export function launchRateLimit(perMinute: number, redis?: RedisClient): RequestHandler {
  return rateLimit({
    windowMs: 60_000,
    limit: perMinute,
    standardHeaders: 'draft-7',
    legacyHeaders: false,
    ...(redis ? { store: new RedisStore({ prefix: 'smart-bff:rl:', sendCommand: (...args: string[]) => sendCommandLoadingScriptsLater(redis, args) }) } : {}),
    // Redis down must not lock everyone out of launching: let the request through (the session store answers 503).
    passOnStoreError: true,
    handler: (_req, _res, next) => next(new AppError(ErrorCode.RATE_LIMITED, 429, 'Too many launch attempts from this address. Wait a minute and try again.')),
  });
}

const NOT_LOADED_SHA = '0'.repeat(40);

/** rate-limit-redis's sendCommand, for a store that must survive Redis being down when it is created (above). */
export async function sendCommandLoadingScriptsLater(redis: RedisClient, args: string[]): Promise<RedisReply> {
  try {
    return (await redis.sendCommand(args)) as RedisReply;
  } catch (err) {
    if (args[0]?.toUpperCase() === 'SCRIPT' && args[1]?.toUpperCase() === 'LOAD') return NOT_LOADED_SHA;
    throw err;
  }
}
