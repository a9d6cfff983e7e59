/**
 * Where a manifest may send the Bulk Data client (SSRF). A manifest comes from the FHIR server, and its file URLs
 * (and the redirects they answer with) are fetched from inside the operator's network: without a check a manifest
 * could make this server read its cloud metadata (169.254.169.254), an internal admin page or anything else only
 * it can reach. So a file URL is refused when it is plain http (except on loopback, below) or when its host is,
 * or resolves to, an address that is not public: private (10/8, 172.16/12, 192.168/16, fc00::/7), link-local
 * (169.254/16, fe80::/10), shared (100.64/10), loopback, unspecified, multicast or reserved, IPv4-mapped IPv6
 * included. Exempt: the FHIR server's own origin (configured by the operator) and BULK_DATA_TRUSTED_ORIGINS
 * (`--trusted-origin`). Loopback is allowed only when the FHIR server itself is on loopback (a local development
 * server). The host name is resolved before each request; a name that resolves differently a moment later (DNS
 * rebinding) is the one gap a check before the request cannot close.
 */
import { lookup as dnsLookup } from 'node:dns/promises';
import { BlockList, isIP } from 'node:net';
import { TRUSTED_ORIGINS_SETTING } from './token-origins.js';

const RANGES: [string, number, 'ipv4' | 'ipv6', string][] = [
  ['0.0.0.0', 8, 'ipv4', 'an unspecified address'],
  ['10.0.0.0', 8, 'ipv4', 'a private network address (10.0.0.0/8)'],
  ['100.64.0.0', 10, 'ipv4', 'a shared address space address (100.64.0.0/10)'],
  ['169.254.0.0', 16, 'ipv4', 'a link-local address (169.254.0.0/16, where cloud metadata services answer)'],
  ['172.16.0.0', 12, 'ipv4', 'a private network address (172.16.0.0/12)'],
  ['192.0.0.0', 24, 'ipv4', 'a reserved address (192.0.0.0/24)'],
  ['192.0.2.0', 24, 'ipv4', 'a reserved address (192.0.2.0/24)'],
  ['192.168.0.0', 16, 'ipv4', 'a private network address (192.168.0.0/16)'],
  ['198.18.0.0', 15, 'ipv4', 'a reserved address (198.18.0.0/15)'],
  ['198.51.100.0', 24, 'ipv4', 'a reserved address (198.51.100.0/24)'],
  ['203.0.113.0', 24, 'ipv4', 'a reserved address (203.0.113.0/24)'],
  ['224.0.0.0', 3, 'ipv4', 'a multicast or reserved address (224.0.0.0/3)'],
  ['::', 128, 'ipv6', 'an unspecified address'],
  ['fc00::', 7, 'ipv6', 'a private network address (fc00::/7)'],
  ['fe80::', 10, 'ipv6', 'a link-local address (fe80::/10)'],
  ['ff00::', 8, 'ipv6', 'a multicast address (ff00::/8)'],
  ['2001:db8::', 32, 'ipv6', 'a reserved address (2001:db8::/32)'],
];
const LOOPBACK: [string, number, 'ipv4' | 'ipv6'][] = [['127.0.0.0', 8, 'ipv4'], ['::1', 128, 'ipv6']];

const lists = RANGES.map(([net, prefix, type, what]) => {
  const list = new BlockList();
  list.addSubnet(net, prefix, type);
  return { list, what };
});
const loopbackList = new BlockList();
for (const [net, prefix, type] of LOOPBACK) loopbackList.addSubnet(net, prefix, type);

function family(address: string): 'ipv4' | 'ipv6' {
  return isIP(address) === 6 ? 'ipv6' : 'ipv4';
}

/** What kind of non-public address this is (loopback apart), or undefined for a public one. */
export function nonPublicAddress(address: string): string | undefined {
  const type = family(address);
  return lists.find((l) => l.list.check(address, type))?.what;
}

export function isLoopbackAddress(address: string): boolean {
  return loopbackList.check(address, family(address));
}

const bare = (hostname: string) => hostname.replace(/^\[|\]$/g, '');

export type Lookup = (hostname: string) => Promise<string[]>;
const systemLookup: Lookup = async (hostname) => (await dnsLookup(hostname, { all: true, verbatim: true })).map((a) => a.address);

export class FileUrlGuard {
  private readonly exempt: ReadonlySet<string>;
  private readonly loopbackAllowed: boolean;

  constructor(fhirBaseUrl: string, trusted: readonly string[], private readonly lookup: Lookup = systemLookup) {
    const fhir = new URL(fhirBaseUrl);
    this.exempt = new Set([fhir.origin, ...trusted.map((o) => new URL(o).origin)]);
    const host = bare(fhir.hostname);
    this.loopbackAllowed = host === 'localhost' || (isIP(host) !== 0 && isLoopbackAddress(host));
  }

  /** Why this URL may not be fetched, judged on the URL alone (its scheme, a literal address); undefined when it may. */
  problem(url: URL): string | undefined {
    if (this.exempt.has(url.origin)) return undefined;
    const host = bare(url.hostname);
    const literal = isIP(host) !== 0;
    const loopback = host === 'localhost' || (literal && isLoopbackAddress(host));
    if (loopback) return this.loopbackAllowed ? undefined : 'a loopback address (this server itself)';
    const kind = literal ? nonPublicAddress(host) : undefined;
    if (kind) return kind;
    return url.protocol === 'http:' ? 'plain http (not https)' : undefined;
  }

  /** The URL, and every address its host name resolves to; the refusal names the URL's origin and the setting. */
  async check(url: URL, what: string): Promise<string | undefined> {
    const direct = this.problem(url);
    if (direct) return this.refusal(url, what, direct);
    const host = bare(url.hostname);
    if (this.exempt.has(url.origin) || isIP(host) !== 0 || host === 'localhost') return undefined;
    let addresses: string[];
    try {
      addresses = await this.lookup(host);
    } catch {
      return undefined; // the request fails by itself, as a network error
    }
    for (const a of addresses) {
      if (isLoopbackAddress(a) && !this.loopbackAllowed) return this.refusal(url, what, `a name for a loopback address (${a})`);
      const kind = nonPublicAddress(a);
      if (kind) return this.refusal(url, what, `a name for ${kind} (${a})`);
    }
    return undefined;
  }

  refusal(url: URL, what: string, why: string): string {
    return `${what} is on ${url.origin}, ${why}: refused, so that a manifest cannot make this server fetch from its own network. `
      + `If ${url.origin} is a file host that belongs to the FHIR server, add it to ${TRUSTED_ORIGINS_SETTING}.`;
  }
}
