/**
 * A V8 CPU profile (.cpuprofile) summarised by layer: each sample's self time goes to the layer of the code it ran
 * in (our modules by directory, npm packages by name, Node's internals by area); native builtins with no source
 * (Buffer.concat, JSON.stringify …) count for the code that called them.
 */
interface ProfileNode { id: number; callFrame: { functionName: string; url: string }; children?: number[] }
interface Profile { nodes: ProfileNode[]; samples: number[]; timeDeltas: number[] }
export interface LayerRow { layer: string; share: number; usPerRequest: number }

const OURS: [RegExp, string][] = [
  [/\/(src|dist)\/proxy\//, 'ours: the proxy (headers, target URL, link rewriting)'],
  [/\/(src|dist)\/session\//, 'ours: session, context and token lookups'],
  [/\/(src|dist)\/http\//, 'ours: request handling (request id, anti-forgery, errors)'],
  [/\/(src|dist)\/smart\//, 'ours: token refresher'],
  [/\/(src|dist)\/observability\//, 'ours: metrics'],
  [/\/(src|dist)\//, 'ours: other'],
];
const NODE: [RegExp, string][] = [
  [/^node:(_http_|http$|https$|internal\/http)/, 'Node: HTTP server, client and agent'],
  [/^node:(net$|internal\/(stream_base_commons|net))|internal\/streams|^node:stream/, 'Node: sockets and streams'],
  [/^node:(internal\/)?(timers|process\/task_queues|async_hooks|internal\/async_hooks|events)/, 'Node: events, timers, promises'],
  [/^node:(buffer|internal\/buffer)/, 'Node: buffers'],
  [/^node:(crypto|internal\/crypto)/, 'Node: crypto'],
  [/^node:/, 'Node: other internals'],
];

function layerOf(url: string): string | undefined {
  if (!url) return undefined;
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (pkg) {
    const name = pkg[1]!;
    if (['express-session', 'cookie', 'cookie-signature', 'uid-safe', 'on-headers', 'memorystore', 'connect-redis'].includes(name)) return 'express-session and its store';
    if (['pino', '@pinojs/redact', 'sonic-boom', 'fast-redact', 'quick-format-unescaped', 'atomic-sleep', 'thread-stream', 'pino-std-serializers', 'safe-stable-stringify'].includes(name)) return 'logging (pino)';
    if (name === 'prom-client' || name === 'tdigest' || name === 'bintrees') return 'metrics (prom-client)';
    if (['router', 'express', 'path-to-regexp', 'parseurl', 'finalhandler', 'debug', 'depd'].includes(name)) return 'router (Express\'s router package)';
    if (name.startsWith('@redis/') || name === 'redis' || name === 'cluster-key-slot') return 'Redis client';
    return `npm: ${name}`;
  }
  for (const [re, layer] of OURS) if (re.test(url)) return layer;
  for (const [re, layer] of NODE) if (re.test(url)) return layer;
  return 'other';
}

const SPECIAL: Record<string, string | null> = {
  '(idle)': null, '(root)': null,
  '(garbage collector)': 'garbage collection',
  '(program)': 'native: V8 and libuv outside JavaScript (syscalls, HTTP parsing)',
};

/** `cpuUsPerRequest`: the profiled process's measured CPU time per request, shared out by the profile's shares. */
export function profileByLayer(profile: Profile, cpuUsPerRequest: number): LayerRow[] {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const layerCache = new Map<number, string | null>();
  const layerOfNode = (id: number): string | null => {
    const cached = layerCache.get(id);
    if (cached !== undefined) return cached;
    const n = byId.get(id)!;
    const special = Object.hasOwn(SPECIAL, n.callFrame.functionName) ? SPECIAL[n.callFrame.functionName] : undefined;
    let layer: string | null;
    if (special !== undefined) layer = special;
    else layer = layerOf(n.callFrame.url) ?? (parent.has(id) ? layerOfNode(parent.get(id)!) : 'other') ?? 'other';
    layerCache.set(id, layer);
    return layer;
  };
  const us = new Map<string, number>();
  let busy = 0;
  profile.samples.forEach((id, i) => {
    const layer = layerOfNode(id);
    if (layer === null) return;
    const dt = profile.timeDeltas[i + 1] ?? 0; // a sample's time is the delta to the next one
    us.set(layer, (us.get(layer) ?? 0) + dt);
    busy += dt;
  });
  return [...us].sort((a, b) => b[1] - a[1]).map(([layer, t]) => ({ layer, share: t / busy, usPerRequest: (t / busy) * cpuUsPerRequest }))
    .concat([{ layer: '**total**', share: 1, usPerRequest: cpuUsPerRequest }]);
}
