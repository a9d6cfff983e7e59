/**
 * Large bodies through the proxy: a Bundle and an NDJSON file, each downloaded whole by a client in this
 * process. Throughput (MB/s of the body as the client received it) and the serving process's peak RSS during
 * the transfer (the kernel's high-water mark, reset just before).
 */
import http from 'node:http';
import { peakRssMiB, resetPeakRss, rssMiB } from './lib.js';

export interface BodyTarget { name: string; base: string; headers: Record<string, string>; pid?: number }
export interface BodyResult { target: string; body: string; mb: number; seconds: number; mbPerSecond: number; rssBefore?: number; peakRss?: number }

function download(url: string, headers: Record<string, string>): Promise<{ bytes: number; seconds: number; status: number }> {
  return new Promise((resolve, reject) => {
    const started = process.hrtime.bigint();
    const req = http.get(url, { headers, agent: false }, (res) => {
      let bytes = 0;
      res.on('data', (chunk: Buffer) => (bytes += chunk.length));
      res.on('end', () => resolve({ bytes, seconds: Number(process.hrtime.bigint() - started) / 1e9, status: res.statusCode ?? 0 }));
      res.on('error', reject);
    });
    req.on('error', reject);
  });
}

export async function measureBody(target: BodyTarget, body: { name: string; path: string }): Promise<BodyResult> {
  const rssBefore = target.pid ? rssMiB(target.pid) : undefined;
  const canPeak = target.pid ? resetPeakRss(target.pid) : false;
  const { bytes, seconds, status } = await download(`${target.base}${body.path}`, target.headers);
  if (status !== 200) throw new Error(`${target.name} ${body.path}: HTTP ${status}`);
  const mb = bytes / (1024 * 1024);
  return { target: target.name, body: body.name, mb, seconds, mbPerSecond: mb / seconds, rssBefore, peakRss: canPeak && target.pid ? peakRssMiB(target.pid) : undefined };
}
