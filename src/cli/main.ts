/**
 * `smart-bff` command line: keys generate, token, export, explain (the server's log as the story of each
 * launch: explain.ts) and doctor (registrations checked before anyone launches: doctor.ts). Configuration from flags or the environment
 * (SMART_BACKEND_ISS, SMART_BACKEND_CLIENT_ID, SMART_BACKEND_KEY_FILE, SMART_BACKEND_SCOPE,
 * BULK_DATA_TRUSTED_ORIGINS). Failures print one description (export-errors.ts): the message, the likely causes
 * and what to do, and exit 1; permanent ones (invalid_client, …) at once, without retrying.
 */
import { readFileSync } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';
import { Command, InvalidArgumentError, Option } from 'commander';
import cliProgress from 'cli-progress';
import { generateSigningKey, parsePrivateKey, type SigningAlg } from '../keys.js';
import { createLogger } from '../log.js';
import { DiscoveryCache } from '../smart/discovery.js';
import { BackendTokenClient, type BackendClient } from '../backend-services/token-client.js';
import { BulkExporter, DEFAULT_EXPORT_TIMEOUT_SECONDS, type ExportEvent, type ExportParameters } from '../backend-services/bulk-export.js';
import { describeFailure } from '../backend-services/export-errors.js';
import { Deadline, withRetries } from '../backend-services/retry.js';
import { parseTrustedOrigins } from '../backend-services/token-origins.js';
import { displayUrl } from '../backend-services/display-url.js';
import { explainText, parseSince, readInput } from './explain.js';
import { addDoctorCommand } from './doctor.js';

/** `smart-bff token` waits out throttling (429) this long at most. */
const TOKEN_DEADLINE_SECONDS = 120;

function backendOptions(cmd: Command): Command {
  return cmd
    .addOption(new Option('--iss <url>', 'FHIR base URL').env('SMART_BACKEND_ISS'))
    .addOption(new Option('--client-id <id>', 'client id registered for backend services').env('SMART_BACKEND_CLIENT_ID'))
    .addOption(new Option('--key <file>', 'private key file (PEM or JWK)').env('SMART_BACKEND_KEY_FILE'))
    .addOption(new Option('--kid <kid>', 'key id, when the key has none (default: RFC 7638 thumbprint)').env('SMART_BACKEND_KEY_ID'))
    .addOption(new Option('--jku <url>', 'JWKS URL to name in the assertion header (jku)'))
    .option('--insecure', 'allow http:// (a local development server only)', false)
    .option('--verbose', 'log each step (JSON lines on stderr)', false);
}

interface BackendFlags { iss?: string; clientId?: string; key?: string; kid?: string; jku?: string; insecure: boolean; verbose: boolean; scope?: string }

async function setup(flags: BackendFlags, scope: string) {
  const missing = [!flags.iss && '--iss (or SMART_BACKEND_ISS)', !flags.clientId && '--client-id (or SMART_BACKEND_CLIENT_ID)', !flags.key && '--key (or SMART_BACKEND_KEY_FILE)'].filter(Boolean);
  if (missing.length) throw new InvalidArgumentError(`missing ${missing.join(', ')}`);
  let keyText: string;
  try {
    keyText = readFileSync(flags.key!, 'utf8');
  } catch (err) {
    throw new InvalidArgumentError(`cannot read key file ${flags.key}: ${(err as NodeJS.ErrnoException).code}`);
  }
  const key = await parsePrivateKey(keyText, flags.kid).catch((err: Error) => { throw new InvalidArgumentError(`${flags.key}: ${err.message}`); });
  const logger = createLogger({ level: flags.verbose ? 'info' : 'silent', destination: process.stderr as unknown as import('pino').DestinationStream });
  const allowInsecureHttp = flags.insecure || /^http:\/\/(localhost|127\.0\.0\.1|\[::1\])(:\d+)?\//.test(flags.iss!);
  const discovery = new DiscoveryCache({ purpose: 'backend', ttlSeconds: 3600, timeoutMs: 15000, allowInsecureHttp });
  const tokens = new BackendTokenClient({ discovery, logger, timeoutMs: 15000, allowInsecureHttp, skewSeconds: 30 });
  const client: BackendClient = { iss: flags.iss!, clientId: flags.clientId!, key, scope, ...(flags.jku ? { jku: flags.jku } : {}) };
  return { tokens, client, logger, allowInsecureHttp };
}

/** The one way a failure reaches the terminal: the message, the likely causes, what to do next; exit 1. */
function fail(err: unknown): never {
  const f = describeFailure(err);
  const causes = f.causes.length ? `likely causes:\n${f.causes.map((c) => `  - ${c}\n`).join('')}` : '';
  process.stderr.write(`error: ${f.message}\n${causes}${f.hint ? `${f.hint}\n` : ''}`);
  process.exit(1);
}

/** "90", "90s", "30m", "6h", "1d" → seconds. */
function parseDuration(v: string): number {
  const m = /^(\d+)\s*(s|m|h|d)?$/i.exec(v.trim());
  if (!m || Number(m[1]) <= 0) throw new InvalidArgumentError('a duration such as 600, 30m, 6h or 1d');
  return Number(m[1]) * { s: 1, m: 60, h: 3600, d: 86400 }[(m[2] ?? 's').toLowerCase() as 's'];
}

const retryLine = (e: { what: string; kind: string; waitMs: number; reason: string }) => e.kind === 'throttled'
  ? `${e.what}: the server is busy (${e.reason}); waiting ${Math.round(e.waitMs / 100) / 10} s as it asks`
  : `retrying ${e.what} in ${Math.round(e.waitMs / 100) / 10} s (${e.reason})`;

const program = new Command('smart-bff').description('SMART on FHIR backend-for-frontend: backend services tools, registrations checked before anyone launches (doctor), and the story of each launch from the server\'s log (explain)').showHelpAfterError();

program
  .command('keys')
  .description('signing keys for SMART Backend Services / private_key_jwt')
  .command('generate')
  .description('generate a private key (PEM, mode 0600) and its public JWKS; kid = RFC 7638 thumbprint')
  .addOption(new Option('--alg <alg>', 'signing algorithm').choices(['RS384', 'ES384']).default('ES384'))
  .requiredOption('--out <dir>', 'output directory')
  .action(async (o: { alg: SigningAlg; out: string }) => {
    const k = await generateSigningKey(o.alg, o.out);
    const key = shellQuote(isAbsolute(k.privateKeyPath) || k.privateKeyPath.startsWith('.') ? k.privateKeyPath : `./${k.privateKeyPath}`);
    const sandboxReads = resolve(o.out) === resolve('keys')
      ? 'its client sandbox-backend accepts the public keys in ./keys at once'
      : `its client sandbox-backend reads ./keys: start it with SANDBOX_KEYS_DIR=${shellQuote(o.out)}, or paste the JWKS above on http://localhost:3000/sandbox/backend-services`;
    console.log(`Generated ${k.alg} key ${k.kid}
  private key: ${k.privateKeyPath}   (mode 0600; keep it secret, never commit it)
  public JWKS: ${k.jwksPath}

Paste into the EHR's registration form (JWK Set), or serve it at a JWKS URL:
${JSON.stringify({ keys: [k.publicJwk] }, null, 2)}

Token endpoint auth: private_key_jwt, signing algorithm ${k.alg}, key id (kid) ${k.kid}

Next, against the built-in sandbox EHR (\`npm start\`; ${sandboxReads}):
  npx smart-bff token  --iss http://localhost:3000/sandbox/fhir --client-id sandbox-backend --key ${key}
  npx smart-bff export --iss http://localhost:3000/sandbox/fhir --client-id sandbox-backend --key ${key} --out ./export
Against an EHR that registered the JWKS above for <client id>:
  npx smart-bff token  --iss <fhir base> --client-id <client id> --key ${key}
  (or SMART_BACKEND_KEY_FILE=${key} for the server's backend registration)`);
  });

backendOptions(program.command('token').description('get a system access token (client_credentials with a signed JWT assertion)'))
  .addOption(new Option('--scope <scopes>', 'scopes (SMART v2; converted to v1 when the server only supports v1)').env('SMART_BACKEND_SCOPE').default('system/*.rs'))
  .option('--json', 'print JSON', false)
  .action(async (o: BackendFlags & { scope: string; json: boolean }) => {
    try {
      const { tokens, client } = await setup(o, o.scope);
      // Network errors, 5xx and 429 are retried; invalid_client and the other OAuth errors fail at once.
      const t = await withRetries('token request', () => tokens.getToken(client), {
        maxRetries: 3, baseMs: 1000, deadline: new Deadline(TOKEN_DEADLINE_SECONDS, `${TOKEN_DEADLINE_SECONDS} s`),
        onRetry: (e) => process.stderr.write(`${retryLine(e)}\n`),
      });
      // The token is this command's product, written to stdout for the operator who asked for it (as
      // `gcloud auth print-access-token` does); it is never logged. Plain mode puts only the token on stdout, so
      // `TOKEN=$(smart-bff token …)` works, and the details on stderr.
      if (o.json) process.stdout.write(`${JSON.stringify({ access_token: t.accessToken, token_type: t.tokenType, expires_at: new Date(t.expiresAt).toISOString(), scope: t.scope }, null, 2)}\n`);
      else {
        process.stdout.write(`${t.accessToken}\n`);
        process.stderr.write(`expires: ${new Date(t.expiresAt).toISOString()} (in ${Math.round((t.expiresAt - Date.now()) / 1000)} s)\nscope:   ${t.scope}\ntoken endpoint: ${t.tokenEndpoint}\n`);
      }
    } catch (err) {
      fail(err);
    }
  });

backendOptions(program.command('export').description('run a FHIR Bulk Data export and download its files'))
  .option('--group <id>', 'Group-level export')
  .option('--patient', 'Patient-level export', false)
  .option('--type <types>', 'resource types, comma-separated (_type)')
  .option('--since <instant>', 'only resources changed since (_since)')
  .option('--type-filter <filter...>', '_typeFilter, repeatable')
  .option('--output-format <format>', '_outputFormat', 'application/fhir+ndjson')
  .option('--concurrency <n>', 'parallel downloads', (v) => Number.parseInt(v, 10), 4)
  .option('--timeout <duration>', 'give up after this long (600, 30m, 6h, 1d); the job is then deleted on the server unless --keep', parseDuration, DEFAULT_EXPORT_TIMEOUT_SECONDS)
  .option('--keep', 'leave the job on the server: no DELETE after the download, nor at the --timeout', false)
  .option('--fresh', 'discard an earlier export in --out (its unfinished job is deleted on the server) instead of resuming or refusing', false)
  .addOption(new Option('--trusted-origin <origin...>', 'an origin besides the FHIR server\'s that may receive the token (the server\'s file host); repeatable').env('BULK_DATA_TRUSTED_ORIGINS'))
  .addOption(new Option('--scope <scopes>', 'scopes (default: system/<type>.rs for each --type, else system/*.rs)').env('SMART_BACKEND_SCOPE'))
  .requiredOption('--out <dir>', 'output directory (an interrupted export in it is resumed)')
  .action(async (o: BackendFlags & { group?: string; patient: boolean; type?: string; since?: string; typeFilter?: string[]; outputFormat: string; concurrency: number; out: string; timeout: number; keep: boolean; fresh: boolean; trustedOrigin?: string[] | string }) => {
    const types = o.type?.split(',').map((t) => t.trim()).filter(Boolean);
    const scope = o.scope ?? (types?.length ? types.map((t) => `system/${t}.rs`).join(' ') : 'system/*.rs');
    const params: ExportParameters = {
      level: o.group ? 'group' : o.patient ? 'patient' : 'system',
      ...(o.group ? { groupId: o.group } : {}),
      ...(types?.length ? { types } : {}),
      ...(o.since ? { since: o.since } : {}),
      ...(o.typeFilter?.length ? { typeFilters: o.typeFilter } : {}),
      outputFormat: o.outputFormat,
    };
    let exporter: BulkExporter | undefined;
    const abort = new AbortController();
    const tty = process.stderr.isTTY;
    const bar = new cliProgress.SingleBar({ stream: process.stderr, format: ' {phase} |{bar}| {value}/{total} {detail}', hideCursor: true, noTTYOutput: false }, cliProgress.Presets.shades_classic);
    let barStarted = false;
    const say = (s: string) => { if (!tty) process.stderr.write(`${s}\n`); };
    const onEvent = (e: ExportEvent) => {
      switch (e.phase) {
        case 'kickoff': say(`export started: ${displayUrl(e.statusUrl)}`); break;
        case 'resumed': process.stderr.write(`resuming the unfinished export in ${o.out} (${e.filesDone}/${e.filesTotal} files done)\n`); break;
        case 'polling':
          if (tty) { if (!barStarted) { bar.start(100, 0, { phase: 'server ', detail: '' }); barStarted = true; } bar.update(Number(/(\d+)\s*%/.exec(e.progress ?? '')?.[1] ?? 0), { detail: e.progress ?? 'in progress' }); }
          say(`server working${e.progress ? `: ${e.progress}` : ''} (next check in ${e.retryAfterSeconds} s)`);
          break;
        case 'manifest':
          if (barStarted) bar.stop();
          if (tty) { bar.start(e.files, 0, { phase: 'files  ', detail: '' }); barStarted = true; }
          say(`export ready: ${e.files} files`);
          break;
        case 'file':
          if (tty) bar.update(e.filesDone, { detail: `${(e.bytes / 1048576).toFixed(1)} MB` });
          say(`downloaded ${e.file.path} (${e.file.resources} resources, ${e.file.bytes} bytes) [${e.filesDone}/${e.filesTotal}]`);
          break;
        case 'retry': say(retryLine(e)); break;
        case 'deleted': if (!e.ok) process.stderr.write(`warning: deleting the job on the server failed (${e.status ?? 'no answer'}); the server expires it by itself\n`); break;
      }
    };
    let cancelling = false;
    process.on('SIGINT', () => {
      if (cancelling) return; // a second Ctrl-C (or the wrapper forwarding the first) while cancelling
      cancelling = true;
      process.stderr.write('\ncancelling: deleting the export job on the server…\n');
      abort.abort(new Error('cancelled'));
      void exporter?.cancel().finally(() => process.exit(130));
    });
    try {
      const { tokens, client, logger, allowInsecureHttp } = await setup(o, scope);
      const origins = [o.trustedOrigin ?? []].flat();
      const trusted = parseTrustedOrigins(origins, allowInsecureHttp);
      if (trusted.problems.length) throw new InvalidArgumentError(`--trusted-origin (or BULK_DATA_TRUSTED_ORIGINS): ${trusted.problems.join('; ')}`);
      exporter = new BulkExporter({
        fhirBaseUrl: o.iss!, clientId: o.clientId!, outDir: o.out, logger, concurrency: o.concurrency, signal: abort.signal, onEvent,
        trustedOrigins: trusted.origins, timeoutSeconds: o.timeout, timeoutLabel: `--timeout ${o.timeout} s`, keep: o.keep, fresh: o.fresh,
        token: (renew) => tokens.getToken(client, { forceRenew: Boolean(renew) }),
      });
      const s = await exporter.run(params);
      if (barStarted) bar.stop();
      console.log(`Export complete${s.resumed ? ' (resumed)' : ''} in ${s.seconds} s: ${s.files} files, ${(s.bytes / 1048576).toFixed(2)} MB in ${s.outDir}`);
      for (const [type, n] of Object.entries(s.resourcesByType)) console.log(`  ${type.padEnd(28)} ${n}`);
      if (s.errorFiles) console.log(`  ${s.errors} error(s) reported by the server in ${s.errorFiles} error file(s) (error-*.ndjson)`);
      console.log(s.deletedOnServer ? 'The job was deleted on the server (its files there are freed).' : o.keep ? 'The job was left on the server (--keep).' : 'The job could not be deleted on the server; it expires there by itself.');
    } catch (err) {
      if (barStarted) bar.stop();
      if (abort.signal.aborted) return;
      fail(err);
    }
  });

program
  .command('explain')
  .description('read the server\'s log (the JSON lines it writes, `heroku logs`, or Cloud Logging output) and tell the story of each launch: failed ones first, with the diagnosis and the fix')
  .argument('[file]', 'a log file (default: standard input; - is standard input too)')
  .option('--launch <id>', 'only this launch (its launch id, or the request id of one of its requests)')
  .option('--failed', 'only failed launches', false)
  .option('--since <time>', 'only launches active since an ISO time (2026-11-26T01:00:00Z) or for the last 30m, 2h, 1d', (v) => {
    try {
      return parseSince(v);
    } catch (err) {
      throw new InvalidArgumentError((err as Error).message.replace(/^--since: /, ''));
    }
  })
  .option('--json', 'print JSON (the stories and a summary)', false)
  .addHelpText('after', `
Examples:
  heroku logs -n 1500 -a my-app | npx smart-bff explain --failed
  gcloud logging read 'resource.type="gae_app" AND jsonPayload.event:*' --freshness=1h --format=json | npx smart-bff explain
  npx smart-bff explain server.log --launch hY2k3Jd9aB1c`)
  .action(async (file: string | undefined, o: { launch?: string; failed: boolean; since?: number; json: boolean }) => {
    if (!file && process.stdin.isTTY) process.stderr.write('smart-bff explain: reading the log from standard input (pipe `heroku logs` or a file into it; Ctrl-D ends)\n');
    let text: string;
    try {
      text = await readInput(file, process.stdin);
    } catch (err) {
      process.stderr.write(`error: cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}\n`);
      process.exit(1);
    }
    process.stdout.write(explainText(text, { ...(o.launch ? { launch: o.launch } : {}), failed: o.failed, ...(o.since !== undefined ? { since: o.since } : {}), json: o.json }));
  });

addDoctorCommand(program);

function shellQuote(s: string): string {
  return /^[\w./@:+-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

program.parseAsync(process.argv).catch(fail);
