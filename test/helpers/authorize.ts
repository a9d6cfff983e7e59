/**
 * Drives the sandbox authorization server like a person would: follows the authorization request through the
 * sign-in and consent pages (real HTML forms, real cookies) and returns the redirect back to the app — its
 * callback URL with `code` and `state`, or with `error`.
 */
import { Browser } from './browser.js';

export interface AuthorizeOptions {
  /** Practitioner id to sign in as (default: the first listed). */
  user?: string;
  /** Patient to pick in a standalone launch (default: the first listed). */
  patient?: string;
  deny?: boolean;
  browser?: Browser;
}

function formAction(html: string): string {
  const m = /<form[^>]*action="([^"]+)"/.exec(html);
  if (!m) throw new Error(`no form on the page:\n${html.slice(0, 500)}`);
  return m[1]!.replace(/&amp;/g, '&');
}

function firstRadio(html: string, name: string): string | undefined {
  return new RegExp(`name="${name}" value="([^"]+)"`).exec(html)?.[1];
}

export async function authorize(authorizeUrl: string, opts: AuthorizeOptions = {}): Promise<string> {
  const browser = opts.browser ?? new Browser();
  const asOrigin = new URL(authorizeUrl).origin;
  let url = authorizeUrl;
  for (let step = 0; step < 20; step++) {
    const res = await browser.get(url);
    const location = res.headers.get('location');
    if (res.status >= 300 && res.status < 400 && location) {
      await res.arrayBuffer();
      const next = new URL(location, url);
      if (next.origin !== asOrigin || !next.pathname.includes('/auth') && !next.pathname.includes('/interaction')) return next.href;
      url = next.href;
      continue;
    }
    const html = await res.text();
    if (res.status !== 200) throw new Error(`authorization server answered ${res.status}: ${html.replace(/<style>[^]*?<\/style>/, "").slice(0, 600)}`);
    const action = new URL(formAction(html), url).href;
    let body: URLSearchParams;
    if (html.includes('name="user"')) {
      body = new URLSearchParams({ user: opts.user ?? firstRadio(html, 'user') ?? '' });
    } else if (html.includes('name="action"')) {
      body = new URLSearchParams({ action: opts.deny ? 'deny' : 'allow' });
      if (html.includes('name="patient"')) body.set('patient', opts.patient ?? firstRadio(html, 'patient') ?? '');
    } else {
      throw new Error(`unexpected page at ${url}: ${html.slice(0, 300)}`);
    }
    const post = await browser.request(action, { method: 'POST', body: body.toString(), headers: { 'content-type': 'application/x-www-form-urlencoded' } });
    const loc = post.headers.get('location');
    await post.arrayBuffer();
    if (!loc) throw new Error(`form post to ${action} answered ${post.status} without a redirect`);
    url = new URL(loc, action).href;
    if (new URL(url).origin !== asOrigin) return url;
  }
  throw new Error('too many steps at the authorization server');
}
