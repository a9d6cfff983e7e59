/**
 * `smart-bff` command line: keys generate, token, export. Configuration from flags or the environment
 * (SMART_BACKEND_ISS, SMART_BACKEND_CLIENT_ID, SMART_BACKEND_KEY_FILE, SMART_BACKEND_SCOPE).
 */
import { readFileSync } from 'node:fs';
import { Command, InvalidArgumentError, Option } from 'commander';
import cliProgress from 'cli-progress';
import { parsePrivateKey, type SigningAlg } from '../config.js';
import { createLogger } from '../log.js';
import { DiscoveryCache } from '../smart/discovery.js';
import { generateSigningKey } from '../backend-services/keys.js';
import { BackendTokenClient, BackendTokenError, type BackendClient } from '../backend-services/token-client.js';
import { BulkExporter, ExportError, type ExportEvent, type ExportParameters } from '../backend-services/bulk-export.js';

const env = process.env;

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
  const allowInsecureHttp = flags.insecure || flags.iss!.startsWith('http://localhost') || flags.iss!.startsWith('http://127.0.0.1');
  const discovery = new DiscoveryCache({ purpose: 'backend', ttlSeconds: 3600, timeoutMs: 15000, allowInsecureHttp });
  const tokens = new BackendTokenClient({ discovery, logger, timeoutMs: 15000, allowInsecureHttp, skewSeconds: 30 });
  const client: BackendClient = { iss: flags.iss!, clientId: flags.clientId!, key, scope, ...(flags.jku ? { jku: flags.jku } : {}) };
  return { tokens, client, logger };
}

function fail(err: unknown): never {
  if (err instanceof BackendTokenError) {
    process.stderr.write(`error: ${err.message}\n${err.causes.map((c) => `  - ${c}\n`).join('')}`);
  } else {
    process.stderr.write(`error: ${(err as Error).message}\n`);
  }
  process.exit(1);
}

const program = new Command('smart-bff').description('SMART on FHIR backend-for-frontend: backend services tools').showHelpAfterError();

program
  .command('keys')
  .description('signing keys for SMART Backend Services / private_key_jwt')
  .command('generate')
  .description('generate a private key (PEM, mode 0600) and its public JWKS; kid = RFC 7638 thumbprint')
  .addOption(new Option('--alg <alg>', 'signing algorithm').choices(['RS384', 'ES384']).default('ES384'))
  .requiredOption('--out <dir>', 'output directory')
  .action(async (o: { alg: SigningAlg; out: string }) => {
    const k = await generateSigningKey(o.alg, o.out);
    console.log(`Generated ${k.alg} key ${k.kid}
  private key: ${k.privateKeyPath}   (mode 0600; keep it secret, never commit it)
  public JWKS: ${k.jwksPath}

Paste into the EHR's registration form (JWK Set), or serve it at a JWKS URL:
${JSON.stringify({ keys: [k.publicJwk] }, null, 2)}

Then use: --key ${k.privateKeyPath}   (or SMART_PRIVATE_KEY_FILE / SMART_BACKEND_KEY_FILE)
Token endpoint auth: private_key_jwt, signing algorithm ${k.alg}, key id (kid) ${k.kid}`);
  });

backendOptions(program.command('token').description('get a system access token (client_credentials with a signed JWT assertion)'))
  .addOption(new Option('--scope <scopes>', 'scopes (SMART v2; converted to v1 when the server only supports v1)').env('SMART_BACKEND_SCOPE').default('system/*.rs'))
  .option('--json', 'print JSON', false)
  .action(async (o: BackendFlags & { scope: string; json: boolean }) => {
    try {
      const { tokens, client } = await setup(o, o.scope);
      const t = await tokens.getToken(client);
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
  .addOption(new Option('--scope <scopes>', 'scopes (default: system/<type>.rs for each --type, else system/*.rs)').env('SMART_BACKEND_SCOPE'))
  .requiredOption('--out <dir>', 'output directory (an interrupted export in it is resumed)')
  .action(async (o: BackendFlags & { group?: string; patient: boolean; type?: string; since?: string; typeFilter?: string[]; outputFormat: string; concurrency: number; out: string }) => {
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
        case 'kickoff': say(`export started: ${e.statusUrl}`); break;
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
        case 'retry': say(`retrying ${e.what} in ${Math.round(e.waitMs / 100) / 10} s (${e.reason})`); break;
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
      const { tokens, client, logger } = await setup(o, scope);
      exporter = new BulkExporter({
        fhirBaseUrl: o.iss!, outDir: o.out, logger, concurrency: o.concurrency, signal: abort.signal, onEvent,
        token: (renew) => tokens.getToken(client, { forceRenew: Boolean(renew) }),
      });
      const s = await exporter.run(params);
      if (barStarted) bar.stop();
      console.log(`Export complete${s.resumed ? ' (resumed)' : ''} in ${s.seconds} s: ${s.files} files, ${(s.bytes / 1048576).toFixed(2)} MB in ${s.outDir}`);
      for (const [type, n] of Object.entries(s.resourcesByType)) console.log(`  ${type.padEnd(28)} ${n}`);
      if (s.errorFiles) console.log(`  ${s.errors} error(s) reported by the server in ${s.errorFiles} error file(s) (error-*.ndjson)`);
    } catch (err) {
      if (barStarted) bar.stop();
      if (abort.signal.aborted) return;
      if (err instanceof ExportError || err instanceof BackendTokenError || err instanceof InvalidArgumentError) fail(err);
      fail(err);
    }
  });

program.parseAsync(process.argv).catch(fail);
