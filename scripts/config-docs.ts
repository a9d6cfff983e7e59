/**
 * Writes docs/configuration.md and .env.example from the table of environment variables in src/env-schema.ts:
 * `npm run docs:config`. test/unit/config-docs.test.ts fails when either committed file differs from what this
 * writes, so the docs cannot drift from the program.
 */
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { ENV_GROUPS, envVarDocs, type EnvGroup, type EnvVarDoc } from '../src/env-schema.js';

const GENERATED = 'Generated from src/env-schema.ts by `npm run docs:config`: edit that file, not this one.';

function byGroup(): [EnvGroup, EnvVarDoc[]][] {
  const vars = envVarDocs();
  return (Object.keys(ENV_GROUPS) as EnvGroup[]).map((g) => [g, vars.filter((v) => v.group === g)] as [EnvGroup, EnvVarDoc[]]).filter(([, vs]) => vs.length > 0);
}

/**
 * Text for a table cell: pipes escaped everywhere; outside `code`, the characters Markdown would act on escaped
 * and the names of variables set as code.
 */
function cell(s: string, names: ReadonlySet<string>): string {
  return s
    .split('`')
    .map((part, i) => (i % 2 ? part : part
      .replace(/[\\*<>[\]]/g, (c) => (c === '<' ? '&lt;' : c === '>' ? '&gt;' : `\\${c}`))
      .replace(/\b[A-Z][A-Z0-9_]+\b/g, (w) => (names.has(w) ? `\`${w}\`` : w))))
    .join('`')
    .replace(/\|/g, '\\|')
    .replace(/\n/g, ' ');
}
const code = (s: string) => (s.includes('`') ? `\`\` ${s} \`\`` : `\`${s}\``);

export function renderConfigurationMarkdown(): string {
  const out: string[] = [
    '# Configuration',
    '',
    `<!-- ${GENERATED} -->`,
    '',
    'Every environment variable smart-bff reads. The server reads and validates them once at startup and reports every',
    'problem together, each with its variable; nothing has a default secret. Variables marked **secret** hold a secret',
    '(or a password inside a URL): keep them in Secret Manager (App Engine) or `heroku config:set` (Heroku), never in a',
    'committed file. [.env.example](../.env.example) has the same list as a file to copy for local use. Deploying on',
    'Heroku and App Engine, with the values to set there: [deploy.md](deploy.md).',
    '',
    'Several EHRs (`SMART_CONFIG_FILE`) and several backend registrations (`BACKEND_CONFIG_FILE`) are described in the',
    '[README](../README.md#connecting-a-real-ehr) and [backend-services.md](backend-services.md).',
    '',
  ];
  const names = new Set(envVarDocs().map((v) => v.name));
  for (const [group, vars] of byGroup()) {
    out.push(`## ${ENV_GROUPS[group]}`, '', '| variable | what it does | default | example |', '|---|---|---|---|');
    for (const v of vars) {
      const name = `${code(v.name)}${v.secret ? ' **secret**' : ''}`;
      const def = v.defaultText === undefined ? 'unset' : cell(v.defaultIsValue ? code(v.defaultText) : v.defaultText, names);
      out.push(`| ${name} | ${cell(v.description, names)} | ${def} | ${v.example === undefined ? '' : cell(code(v.example), names)} |`);
    }
    out.push('');
  }
  return out.join('\n');
}

function wrap(text: string, width = 112): string[] {
  const lines: string[] = [];
  let line = '#';
  for (const word of text.split(/\s+/)) {
    if (line.length + 1 + word.length > width && line !== '#') {
      lines.push(line);
      line = '#';
    }
    line += ` ${word}`;
  }
  lines.push(line);
  return lines;
}

export function renderEnvExample(): string {
  const out: string[] = [
    ...wrap(`smart-bff configuration: every environment variable the program reads. ${GENERATED} docs/configuration.md has the same as a table.`),
    ...wrap('Copy to .env for local use (never commit it) and load it with `node --env-file=.env dist/server.js`, or export the variables. Every value is validated once at startup and all problems are reported together; nothing has a default secret.'),
    '',
  ];
  for (const [group, vars] of byGroup()) {
    const title = `# --- ${ENV_GROUPS[group]} `;
    out.push(title + '-'.repeat(Math.max(3, 112 - title.length)));
    for (const v of vars) {
      const def = v.defaultText === undefined ? '' : v.defaultText.startsWith('unset') ? `U${v.defaultText.slice(1)}.` : `Default: ${v.defaultText}.`;
      const extra = [def, v.secret ? 'Secret: never commit it.' : ''].filter(Boolean).join(' ');
      out.push(...wrap(`${v.description}${extra ? ` ${extra}` : ''}`));
      // an example that is a shell command (`$(openssl …)`) would be taken literally from an env file
      out.push(v.local !== undefined ? `${v.name}=${v.local}` : `# ${v.name}=${v.example?.startsWith('$(') ? '' : v.example ?? ''}`);
    }
    out.push('');
  }
  return out.join('\n');
}

export const OUTPUTS = { 'docs/configuration.md': renderConfigurationMarkdown, '.env.example': renderEnvExample } as const;

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const root = fileURLToPath(new URL('..', import.meta.url));
  for (const [file, render] of Object.entries(OUTPUTS)) {
    writeFileSync(`${root}${file}`, render());
    process.stdout.write(`wrote ${file}\n`);
  }
}
