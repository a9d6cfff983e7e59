/**
 * What the sandbox's revocation endpoint (oidc-provider, RFC 7009) receives, with real token values (its
 * 'revocation' event), and a gate in front of it that can hold requests unanswered, as an EHR that hangs does:
 * `hold(n)` makes the next n revocation requests wait (Infinity: all of them) until `release()`; `aborted` counts
 * held requests whose client gave up (its socket closed) before the gate opened. A test hook in the sandbox's
 * own server, in front of the real authorization server.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import express, { type RequestHandler } from 'express';
import { createSandbox, type Sandbox, type SandboxOptions } from '../../src/sandbox/index.js';

export interface Revocation {
  token: string;
  token_type_hint?: string;
  client_id?: string;
  status: number;
}

export interface RevocationWatch {
  /** Revocation requests the authorization server answered, in order. */
  readonly received: Revocation[];
  /** Held requests now waiting at the gate. */
  readonly waiting: number;
  /** Requests that reached the gate while it held them. */
  readonly held: number;
  /** Held requests whose client went away before the gate opened. */
  readonly aborted: number;
  hold(n?: number): void;
  release(): void;
  /** The revocations of these tokens. */
  of(...tokens: (string | undefined)[]): Revocation[];
}

/**
 * The sandbox on its own server (as startSandbox), with the gate in front of its revocation endpoint: an HTTP
 * hop of the sandbox's own server, before the authorization server reads the request.
 */
export async function startSandboxWithRevocationGate(opts: Omit<SandboxOptions, 'baseUrl'>): Promise<{ sandbox: Sandbox & { url: string }; revocations: RevocationWatch }> {
  const server = http.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/sandbox`;
  const sandbox = await createSandbox({ ...opts, baseUrl: url });
  const received: Revocation[] = [];
  sandbox.events.on('revocation', (e: Revocation) => received.push(e));
  let toHold = 0;
  let waiting = 0;
  let held = 0;
  let aborted = 0;
  let open: (() => void)[] = [];
  const gate: RequestHandler = (req, res, next) => {
    if (req.method !== 'POST' || toHold <= 0) return next();
    toHold--;
    held++;
    waiting++;
    let settled = false;
    const done = (go: boolean) => {
      if (settled) return;
      settled = true;
      waiting--;
      if (go) next();
      else aborted++;
    };
    open.push(() => done(true));
    res.once('close', () => done(false)); // the client gave up before the gate opened
  };
  const app = express();
  app.disable('x-powered-by');
  app.use('/sandbox/auth/token/revocation', gate);
  app.use('/sandbox', sandbox.handler);
  server.on('request', app);
  const revocations: RevocationWatch = {
    received,
    get waiting() { return waiting; },
    get held() { return held; },
    get aborted() { return aborted; },
    hold: (n = Infinity) => { toHold = n; },
    release: () => {
      toHold = 0;
      const o = open;
      open = [];
      for (const go of o) go();
    },
    of: (...tokens) => received.filter((r) => tokens.includes(r.token)),
  };
  return {
    sandbox: {
      ...sandbox, url,
      close: () => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }),
    },
    revocations,
  };
}

/** Polls until `check` returns true (or throws when `timeoutMs` passes). */
export async function waitFor(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
