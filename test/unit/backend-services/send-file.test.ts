/** Streaming an export file (review L3): a read error mid-stream ends the response at once, logged with its code; never a crash or a hang. */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import express from 'express';
import { sendExportFile } from '../../../src/backend-services/send-file.js';
import { captureLogs } from '../../helpers/log-capture.js';

test('a read error after the first bytes cuts the response (shorter than its Content-Length) and logs the code; the server answers the next request', async () => {
  const logs = captureLogs();
  const app = express();
  app.use((req, _res, next) => { req.log = logs.logger; next(); });
  app.get('/f', async (req, res) => {
    let sent = false;
    const failing = new Readable({
      read() {
        if (!sent) { sent = true; this.push(Buffer.from('{"resourceType":"Patient"}\n')); return; }
        setImmediate(() => this.destroy(Object.assign(new Error('EIO: i/o error, read'), { code: 'EIO' })));
      },
    });
    await sendExportFile(req, res, { path: '/unused', size: 10_000 }, {}, () => failing);
  });
  app.get('/ok', (_req, res) => void res.send('ok'));
  const server = http.createServer(app).listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  try {
    const res = await fetch(`${url}/f`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-length')).toBe('10000');
    await expect(res.text()).rejects.toThrow(); // cut, not hanging
    expect(logs.find('bulk.file_stream_failed').map((e) => e.code)).toEqual(['EIO']);
    expect(await (await fetch(`${url}/ok`)).text()).toBe('ok');
  } finally {
    server.closeAllConnections();
    server.close();
  }
});
