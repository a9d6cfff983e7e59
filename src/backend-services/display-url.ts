/**
 * A URL as the Bulk Data client may show it: in a log line, an error message, a failed job's JSON, the exports
 * console. Manifest file URLs are often presigned (S3 `X-Amz-Signature`, Azure SAS `sig=`, Google `Signature=`,
 * a `token=`): their query is a credential to the file for as long as it is valid. So only the origin and the
 * path are shown, and a query is replaced by a note with its fingerprint (length and a short hash: two messages
 * about the same URL can be matched, nothing can be read back). User info and the fragment are dropped too.
 * Downloads always use the full URL, kept only in the export's state file.
 */
import { fingerprint } from '../log.js';

export function displayUrl(url: string | URL): string {
  let u: URL;
  try {
    u = typeof url === 'string' ? new URL(url) : url;
  } catch {
    return '(not a URL)';
  }
  const query = u.search.length > 1 ? `?(query hidden: ${fingerprint(u.search.slice(1))})` : '';
  return `${u.origin}${u.pathname}${query}`;
}

const URL_IN_TEXT = /\bhttps?:\/\/[^\s"'<>()]+/g;

/** Text with every http(s) URL in it shown as displayUrl shows it (a message written before, a server's answer quoting a URL). */
export function hideUrlQueries(text: string): string {
  return text.replace(URL_IN_TEXT, (m) => (/\?[^?]/.test(m) ? displayUrl(m) : m)); // a note written before keeps its `?(`
}

/**
 * A server's answer about a presigned URL, without the URL's query values: S3's SignatureDoesNotMatch quotes the
 * signature it was given (`<SignatureProvided>`), and others echo the whole URL.
 */
export function scrubQueryValues(text: string, url: string): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return hideUrlQueries(text);
  }
  let out = text;
  const secrets = new Set<string>();
  if (u.search.length > 1) secrets.add(u.search.slice(1));
  for (const [, v] of u.searchParams) if (v.length >= 6) secrets.add(v);
  for (const v of [...secrets].sort((a, b) => b.length - a.length)) {
    for (const form of new Set([v, encodeURIComponent(v)])) out = out.split(form).join('(hidden)');
  }
  return hideUrlQueries(out);
}
