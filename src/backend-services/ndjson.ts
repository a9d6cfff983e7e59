/** The names of the NDJSON output format of a Bulk Data export (`_outputFormat`): the one list. */
export const NDJSON_FORMATS: ReadonlySet<string> = new Set(['application/fhir+ndjson', 'application/ndjson', 'ndjson']);

/** `_outputFormat` as a request sends it, the NDJSON names (and none) read as application/fhir+ndjson. */
export function normalizeOutputFormat(f: string | undefined): string {
  const v = (f ?? '').trim().toLowerCase();
  return !v || NDJSON_FORMATS.has(v) ? 'application/fhir+ndjson' : v;
}
