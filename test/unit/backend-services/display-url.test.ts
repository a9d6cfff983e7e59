/** How the Bulk Data client shows a URL: origin and path, never the query of a presigned URL (M2). */
import { displayUrl, hideUrlQueries, scrubQueryValues } from '../../../src/backend-services/display-url.js';
import { describeFailure, ExportError, showFailure } from '../../../src/backend-services/export-errors.js';

const S3 = 'https://bucket.s3.amazonaws.com/exports/Patient-1.ndjson?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAEXAMPLE%2F20261126&X-Amz-Signature=5f1c0e9d8b7a6f5e4d3c2b1a0f9e8d7c';
const AZURE = 'https://acct.blob.core.windows.net/c/Obs.ndjson?sv=2022-11-02&se=2026-11-27&sr=b&sp=r&sig=AbCdEf0123456789%2BxyZ%3D';
const GCS = 'https://storage.googleapis.com/b/o.ndjson?GoogleAccessId=svc%40p.iam&Expires=1790000000&Signature=QmFzZTY0U2lnbmF0dXJl';
const TOKEN = 'https://files.example.org/f/1.ndjson?token=opaque-file-token-42#frag';

test('origin and path; a query becomes a note with its fingerprint; user info and fragment dropped', () => {
  expect(displayUrl(S3)).toMatch(/^https:\/\/bucket\.s3\.amazonaws\.com\/exports\/Patient-1\.ndjson\?\(query hidden: len:\d+\/sha:[\w-]{10}\)$/);
  expect(displayUrl('https://user:pw@files.example.org/a.ndjson')).toBe('https://files.example.org/a.ndjson');
  expect(displayUrl('https://files.example.org/a.ndjson')).toBe('https://files.example.org/a.ndjson');
  expect(displayUrl(TOKEN)).not.toMatch(/opaque|frag/);
  expect(displayUrl(S3)).toBe(displayUrl(S3)); // the same URL, the same note: messages can be matched
  expect(displayUrl(S3)).not.toBe(displayUrl(S3.replace('5f1c', '0000')));
  expect(displayUrl('not a url')).toBe('(not a URL)');
});

test('every URL in a text (S3, Azure SAS, Google signed URLs, a token=)', () => {
  const text = `Downloading a (${S3}) failed; then ${AZURE}, ${GCS} and "${TOKEN}"; see https://docs.example/x`;
  const shown = hideUrlQueries(text);
  for (const secret of ['5f1c0e9d8b7a6f5e4d3c2b1a0f9e8d7c', 'AKIAEXAMPLE', 'AbCdEf0123456789', 'QmFzZTY0U2lnbmF0dXJl', 'opaque-file-token-42', 'sig=', 'Signature=', 'token=']) {
    expect([secret, shown.includes(secret)]).toEqual([secret, false]);
  }
  expect(shown).toContain('https://acct.blob.core.windows.net/c/Obs.ndjson?(query hidden');
  expect(shown).toContain('see https://docs.example/x');
});

test('a server\'s answer quoting the signature (S3 SignatureDoesNotMatch) or the URL loses the query values', () => {
  const xml = '<Error><Code>SignatureDoesNotMatch</Code><SignatureProvided>5f1c0e9d8b7a6f5e4d3c2b1a0f9e8d7c</SignatureProvided><StringToSign>X-Amz-Credential=AKIAEXAMPLE%2F20261126</StringToSign></Error>';
  const out = scrubQueryValues(xml, S3);
  expect(out).not.toContain('5f1c0e9d8b7a6f5e4d3c2b1a0f9e8d7c');
  expect(out).not.toContain('AKIAEXAMPLE');
  expect(out).toContain('<Code>SignatureDoesNotMatch</Code>');
});

test('the one failure description hides queries, and so does showing a record written before', () => {
  const f = describeFailure(new ExportError('download_failed', `Downloading x (${AZURE}) answered 403`, { causes: [`see ${GCS}`], hint: `retry ${TOKEN}` }));
  expect(JSON.stringify(f)).not.toMatch(/AbCdEf|QmFzZTY0|opaque-file/);
  const old = { code: 'download_failed', message: `Downloading x (${S3}) answered 403`, causes: [], hint: `h ${TOKEN}` };
  expect(JSON.stringify(showFailure(old))).not.toMatch(/5f1c0e9d|opaque-file/);
});
