/**
 * `smart-bff doctor`: check registrations before anyone launches (src/doctor/). With no --client-id it loads the
 * server's configuration from the environment exactly as the server does (every launch registration, the
 * sandbox's in development, every backend registration); with --client-id it checks one registration given on
 * the command line. Exit 0 (all ok), 1 (warnings), 2 (errors, a configuration the server would refuse, bad usage).
 * The client secret is never echoed: prefer --secret-env or --secret-stdin, which keep it out of shell history.
 */
import { readFileSync } from 'node:fs';
import { Command, InvalidArgumentError, Option } from 'commander';
import { ConfigError, loadConfig } from '../config.js';
import { parsePrivateKey, type ClientKey } from '../keys.js';
import { createLogger } from '../log.js';
import type { LaunchMode } from '../session/types.js';
import { buildReport, CHECK_IDS, type CheckId, type DoctorReport } from '../doctor/model.js';
import { runDoctor } from '../doctor/run.js';
import { renderJson, renderText, useColour } from '../doctor/render.js';
import { targetsFromCommandLine, targetsFromConfig, type DoctorPlan } from '../doctor/targets.js';

interface DoctorFlags {
  iss?: string;
  clientId?: string;
  key?: string;
  kid?: string;
  secret?: string;
  secretEnv?: string;
  secretStdin: boolean;
  authMethod?: 'client_secret_basic' | 'client_secret_post';
  authEncoding?: 'form' | 'raw';
  scope?: string;
  backend: boolean;
  publicUrl?: string;
  jku?: string;
  jwksUrl?: string;
  insecure: boolean;
  registration?: string[];
  launchMode: 'both' | 'ehr' | 'standalone';
  skip?: CheckId[];
  timeout?: number;
  json: boolean;
  color: boolean;
  verbose: boolean;
}

/** A usage or configuration error: said on stderr, exit 2 (an error, for a pipeline). */
class UsageError extends Error {}

function httpUrl(flag: string) {
  return (v: string): string => {
    let u: URL;
    try {
      u = new URL(v);
    } catch {
      throw new InvalidArgumentError(`not a URL: ${JSON.stringify(v)}`);
    }
    if (!/^https?:$/.test(u.protocol) || u.search || u.hash || u.username || u.password) throw new InvalidArgumentError(`${flag} must be an http(s) URL without query, fragment or credentials`);
    return v;
  };
}

export function addDoctorCommand(program: Command): void {
  program
    .command('doctor')
    .description('check registrations before anyone launches: the EHR\'s SMART configuration, https, PKCE S256, capabilities, client authentication and signing algorithm, scopes, openid, the JWKS URL, clock skew, the URIs to register, and (backend services) a real token request. Exit 0 all ok, 1 warnings, 2 errors')
    .addOption(new Option('--registration <name...>', 'with the server\'s environment: only these registrations'))
    .addOption(new Option('--iss <url>', 'the FHIR base to check: with --client-id, required; without it, only the configured registration that serves this FHIR base (a tenant of a wildcard entry too)').argParser(httpUrl('--iss')))
    .addOption(new Option('--client-id <id>', 'check this client, given on the command line, instead of the server\'s configuration'))
    .addOption(new Option('--key <file>', 'private key file (PEM or JWK): private_key_jwt (confidential asymmetric; backend services)'))
    .addOption(new Option('--kid <kid>', 'key id, when the key has none (default: RFC 7638 thumbprint)'))
    .addOption(new Option('--secret-env <VAR>', 'confidential symmetric: read the client secret from this environment variable'))
    .option('--secret-stdin', 'confidential symmetric: read the client secret from standard input', false)
    .addOption(new Option('--secret <secret>', 'confidential symmetric: the client secret (lands in shell history and the process list: prefer --secret-env or --secret-stdin)'))
    .addOption(new Option('--auth-method <method>', 'how the secret is sent').choices(['client_secret_basic', 'client_secret_post']))
    .addOption(new Option('--auth-encoding <encoding>', 'client_secret_basic: form or raw (SMART_CLIENT_AUTH_ENCODING)').choices(['form', 'raw']))
    .addOption(new Option('--scope <scopes>', 'scopes (default: the server\'s default launch scopes; with --backend system/*.rs)'))
    .option('--backend', 'a backend services registration (client_credentials with --key): runs a real token request', false)
    .addOption(new Option('--public-url <url>', 'this app\'s external origin (PUBLIC_URL): the URIs to register, and its /.well-known/jwks.json to check').argParser(httpUrl('--public-url')))
    .addOption(new Option('--jku <url>', 'backend services: the JWKS URL named in the assertion (jku); checked for the key').argParser(httpUrl('--jku')))
    .addOption(new Option('--jwks-url <url>', 'the JWKS URL registered at the EHR; checked for the key').argParser(httpUrl('--jwks-url')))
    .option('--insecure', 'accept http:// EHR endpoints (a local development server only)', false)
    .addOption(new Option('--launch-mode <mode>', 'the launches the app uses, for the capabilities and scopes checked').choices(['both', 'ehr', 'standalone']).default('both'))
    .addOption(new Option('--skip <check...>', 'checks not to run (e.g. jwks_url on a first deploy, before the server is up)').choices([...CHECK_IDS]))
    .addOption(new Option('--timeout <seconds>', 'timeout of each request to the EHR (default: SMART_HTTP_TIMEOUT_MS, or 15 s)').argParser((v) => {
      const n = Number(v);
      if (!Number.isFinite(n) || n <= 0 || n > 300) throw new InvalidArgumentError('a number of seconds, up to 300');
      return n;
    }))
    .option('--json', 'print JSON: one object per registration with its checks (id, status, message, fix)', false)
    .option('--no-color', 'no colour (also when NO_COLOR is set, or not on a terminal)')
    .option('--verbose', 'log each request (JSON lines on stderr)', false)
    .addHelpText('after', `
Checks (ids for --skip and --json): ${CHECK_IDS.join(', ')}.

Examples:
  npx smart-bff doctor                                   # the server's configuration, from the environment
  heroku run -a my-app npx smart-bff doctor              # the same, with the app's config vars
  npx smart-bff doctor --iss https://fhir.example.org/r4/tenant-1    # one tenant of a wildcard registration
  npx smart-bff doctor --iss https://fhir.example.org/r4 --client-id 0f1c… --secret-env CLIENT_SECRET --public-url https://my-app.example
  npx smart-bff doctor --backend --iss http://localhost:3000/sandbox/fhir --client-id sandbox-backend --key ./keys/es384-….private.pem
  npx smart-bff doctor --json | jq '.registrations[].checks[] | select(.status != "ok")'

Exit codes: 0 all ok, 1 warnings only, 2 errors (or a configuration the server would refuse, or bad usage).
In a pipeline that accepts warnings: npx smart-bff doctor || [ $? -eq 1 ]`)
    .exitOverride((err) => process.exit(err.exitCode === 0 ? 0 : 2))
    .action(async (o: DoctorFlags) => {
      try {
        const report = await doctor(o);
        process.stdout.write(o.json ? renderJson(report) : renderText(report, { colour: o.color && useColour(process.stdout, process.env) }));
        process.exitCode = report.exitCode;
      } catch (err) {
        if (!(err instanceof UsageError)) throw err;
        process.stderr.write(`error: ${err.message}\n`);
        process.exit(2);
      }
    });
}

async function doctor(o: DoctorFlags): Promise<DoctorReport> {
  const logger = createLogger({ level: o.verbose ? 'info' : 'silent', destination: process.stderr as unknown as import('pino').DestinationStream });
  const modes: LaunchMode[] = o.launchMode === 'both' ? ['ehr', 'standalone'] : [o.launchMode];
  const skip = new Set(o.skip ?? []);
  let plan: DoctorPlan;
  if (o.clientId !== undefined) {
    if (!o.iss) throw new UsageError('--client-id needs --iss (the FHIR base URL of the EHR)');
    if (o.registration?.length) throw new UsageError('--registration selects among the server\'s registrations; it does not go with --client-id');
    const secret = await readSecret(o);
    const key = o.key ? await readKey(o.key, o.kid) : undefined;
    if (key && secret !== undefined) throw new UsageError('give a key (private_key_jwt) or a secret (client_secret_basic/post), not both');
    if (o.backend && !key) throw new UsageError('--backend needs --key (backend services sign a JWT assertion with a private key)');
    if ((o.authMethod || o.authEncoding) && secret === undefined) throw new UsageError('--auth-method and --auth-encoding go with a client secret (--secret-env, --secret-stdin or --secret)');
    if (o.jku && !o.backend) throw new UsageError('--jku is for backend services (--backend); for a launch client give the registered JWKS URL with --jwks-url');
    if (o.secret !== undefined) process.stderr.write('warning: a secret given with --secret is in your shell history and visible to other users in the process list; prefer --secret-env VAR or --secret-stdin.\n');
    plan = targetsFromCommandLine({
      iss: o.iss, clientId: o.clientId, backend: o.backend, insecure: o.insecure, production: process.env.NODE_ENV === 'production', modes,
      timeoutMs: Math.round((o.timeout ?? 15) * 1000),
      ...(secret !== undefined ? { secret } : {}), ...(key ? { key } : {}),
      ...(o.authMethod ? { authMethod: o.authMethod } : {}), ...(o.authEncoding ? { authEncoding: o.authEncoding } : {}),
      ...(o.scope ? { scope: o.scope } : {}), ...(o.publicUrl ? { publicUrl: o.publicUrl } : {}),
      ...(o.jku ? { jku: o.jku } : {}), ...(o.jwksUrl ? { jwksUrl: o.jwksUrl } : {}),
    });
  } else {
    const given = (['key', 'kid', 'secret', 'secretEnv', 'authMethod', 'authEncoding', 'scope', 'publicUrl', 'jku', 'jwksUrl'] as const).filter((k) => o[k] !== undefined);
    if (given.length || o.backend || o.secretStdin) {
      throw new UsageError(`${[...given.map((k) => `--${k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`), ...(o.backend ? ['--backend'] : []), ...(o.secretStdin ? ['--secret-stdin'] : [])].join(', ')}: these describe a registration given on the command line and need --client-id (and --iss); without --client-id the doctor checks the server's configuration from the environment`);
    }
    let config;
    try {
      config = await loadConfig(process.env);
    } catch (err) {
      if (err instanceof ConfigError) return buildReport([], [], err.problems);
      throw err;
    }
    plan = targetsFromConfig(config, process.env, {
      modes, ...(o.registration?.length ? { registrations: o.registration } : {}), ...(o.iss ? { iss: o.iss } : {}),
      ...(o.timeout ? { timeoutMs: Math.round(o.timeout * 1000) } : {}),
    });
    plan.notes.push(...config.warnings.map((w) => `The server would warn at startup: ${w}`));
  }
  return runDoctor(plan, { logger, skip });
}

async function readSecret(o: DoctorFlags): Promise<string | undefined> {
  const sources = [o.secret !== undefined, o.secretEnv !== undefined, o.secretStdin].filter(Boolean).length;
  if (sources > 1) throw new UsageError('give the client secret one way: --secret-env, --secret-stdin or --secret');
  if (o.secret !== undefined) {
    if (!o.secret) throw new UsageError('--secret is empty');
    return o.secret;
  }
  if (o.secretEnv !== undefined) {
    const v = process.env[o.secretEnv];
    if (!v) throw new UsageError(`--secret-env ${o.secretEnv}: that environment variable is not set (or empty)`);
    return v;
  }
  if (o.secretStdin) {
    // A terminal would echo the secret as it is typed: pipe it in instead.
    if (process.stdin.isTTY) throw new UsageError('--secret-stdin reads the secret from a pipe (`printf %s "$SECRET" | npx smart-bff doctor … --secret-stdin`, or from a secrets manager\'s CLI); on a terminal use --secret-env VAR');
    const chunks: Buffer[] = [];
    for await (const c of process.stdin) chunks.push(c as Buffer);
    // One line: the newline that ends it is not part of the secret.
    const v = Buffer.concat(chunks).toString('utf8').replace(/\r?\n$/, '');
    if (!v) throw new UsageError('--secret-stdin: nothing was read from standard input');
    return v;
  }
  return undefined;
}

async function readKey(file: string, kid: string | undefined): Promise<ClientKey> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new UsageError(`cannot read key file ${file}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`);
  }
  try {
    return await parsePrivateKey(text, kid);
  } catch (err) {
    throw new UsageError(`${file}: ${(err as Error).message}`);
  }
}
