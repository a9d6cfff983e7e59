/**
 * The sandbox EHR (its authorization server and FHIR server) in a process of its own, as a real EHR is another
 * machine: the server under test shares neither its CPU nor its heap. Prints {"url","fhirBaseUrl"} when ready.
 */
import { startSandbox } from '../src/sandbox/index.js';

const sandbox = await startSandbox({
  clients: [{ client_id: 'bench', token_endpoint_auth_method: 'none', redirect_uris: [] }],
  redirectUriPattern: /^http:\/\/127\.0\.0\.1:\d+\/callback$/,
});
process.stdout.write(`${JSON.stringify({ url: sandbox.url, fhirBaseUrl: sandbox.fhirBaseUrl })}\n`);
process.on('SIGTERM', () => process.exit(0));
