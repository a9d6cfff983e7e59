/**
 * `npm start`'s command (package.json), which the Procfile and app.yaml's entrypoint repeat
 * (test/unit/deploy-files.test.ts): `node <options> dist/server.js`. Tests and benchmarks that run the built server
 * give Node the same options.
 */
import { readFileSync } from 'node:fs';

export const START_COMMAND: string = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { scripts: { start: string } }).scripts.start;

/** The Node options production starts the server with: the words between `node` and `dist/server.js`. */
export const START_NODE_ARGS: string[] = START_COMMAND.split(/\s+/).slice(1, -1);
