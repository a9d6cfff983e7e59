/** Reading a request's cookies: the one parser (the `cookie` package, as express and express-session use). */
import type { IncomingMessage } from 'node:http';
import { parse } from 'cookie';

/** The value of the cookie `name` the request carries (its first occurrence), or undefined. */
export function readCookie(req: Pick<IncomingMessage, 'headers'>, name: string): string | undefined {
  const header = req.headers.cookie;
  if (!header) return undefined;
  return parse(header)[name];
}
