/**
 * A real discovery cache (no caching) whose SMART configuration can be switched to name another token endpoint,
 * so a test can make the EHR's token endpoint misbehave after a launch has started.
 */
import { DiscoveryCache } from '../../src/smart/discovery.js';

export function switchableTokenEndpoint(faultyTokenEndpoint: string): { discovery: DiscoveryCache; useFaulty(on: boolean): void } {
  let faulty = false;
  const discovery = new DiscoveryCache({
    ttlSeconds: 0, timeoutMs: 2000, allowInsecureHttp: true,
    fetch: async (input, init) => {
      const res = await fetch(input, init);
      if (!faulty) return res;
      const doc = (await res.json()) as Record<string, unknown>;
      return new Response(JSON.stringify({ ...doc, token_endpoint: faultyTokenEndpoint }), { status: 200, headers: { 'content-type': 'application/json' } });
    },
  });
  return { discovery, useFaulty: (on) => { faulty = on; } };
}
