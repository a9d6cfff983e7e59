/**
 * A minimal browser for integration tests: fetch over real sockets with a per-host cookie jar and manual
 * redirects, so each hop (launch → authorize → callback → app) can be inspected.
 */
export class Browser {
  private readonly jar = new Map<string, Map<string, string>>();

  cookieHeader(url: string): string {
    const host = new URL(url).host;
    return [...(this.jar.get(host) ?? new Map()).entries()].map(([k, v]) => `${k}=${v}`).join('; ');
  }

  cookies(url: string): Map<string, string> {
    return new Map(this.jar.get(new URL(url).host) ?? []);
  }

  setCookie(url: string, name: string, value: string): void {
    const host = new URL(url).host;
    if (!this.jar.has(host)) this.jar.set(host, new Map());
    this.jar.get(host)!.set(name, value);
  }

  clear(url: string): void {
    this.jar.delete(new URL(url).host);
  }

  async request(url: string, init: RequestInit & { headers?: Record<string, string> } = {}): Promise<Response> {
    const headers: Record<string, string> = { ...(init.headers ?? {}) };
    const cookie = this.cookieHeader(url);
    if (cookie) headers.cookie = cookie;
    const res = await fetch(url, { ...init, headers, redirect: 'manual' });
    const host = new URL(url).host;
    for (const sc of res.headers.getSetCookie()) {
      const [pair, ...attrs] = sc.split(';');
      const eq = pair!.indexOf('=');
      const name = pair!.slice(0, eq).trim();
      const value = pair!.slice(eq + 1).trim();
      if (!this.jar.has(host)) this.jar.set(host, new Map());
      const expired = attrs.some((a) => /^\s*expires=Thu, 01 Jan 1970/i.test(a)) || attrs.some((a) => /^\s*max-age=0/i.test(a));
      if (expired || value === '') this.jar.get(host)!.delete(name);
      else this.jar.get(host)!.set(name, value);
    }
    return res;
  }

  get(url: string, headers: Record<string, string> = {}): Promise<Response> {
    return this.request(url, { headers });
  }

  /** Follows redirects within `maxHops`, returning every response's URL and status, and the last response. */
  async follow(url: string, maxHops = 10): Promise<{ chain: { url: string; status: number }[]; last: Response; lastUrl: string }> {
    const chain: { url: string; status: number }[] = [];
    let current = url;
    for (let i = 0; i < maxHops; i++) {
      const res = await this.get(current);
      chain.push({ url: current, status: res.status });
      const loc = res.headers.get('location');
      if (res.status >= 300 && res.status < 400 && loc) {
        await res.arrayBuffer();
        current = new URL(loc, current).href;
        continue;
      }
      return { chain, last: res, lastUrl: current };
    }
    throw new Error(`too many redirects from ${url}`);
  }
}
