// Preloaded (`node --import ./bench/server-timing.mjs`) into a server under test by bench/time-split.ts: where a
// request's time goes, as the server itself sees it. It wraps http.Server's `emit` to time every request:
//   - in the server: from the 'request' event to the response's 'finish' (the last byte handed to the kernel);
//   - between requests: from one response's 'finish' to the next request on the same connection (the client's
//     turn, and the time the request waits in the socket until the server's event loop reads it);
// and keeps an event-loop delay histogram (perf_hooks, 1 ms resolution: how late a 1 ms timer fires, about how
// long a turn of the loop takes when it is busy). SIGUSR2 writes the histograms since the last SIGUSR2 to
// SERVER_TIMING_FILE as JSON (milliseconds; written beside it and renamed, so a reader never sees half of it) and
// starts new ones. Every server measured gets the same wrapper.
import http from 'node:http';
import { renameSync, writeFileSync } from 'node:fs';
import { createHistogram, monitorEventLoopDelay } from 'node:perf_hooks';

const file = process.env.SERVER_TIMING_FILE;
if (!file) throw new Error('bench/server-timing.mjs needs SERVER_TIMING_FILE');
const finished = Symbol('bench.finished');
let inServer = createHistogram();
let between = createHistogram();
const loop = monitorEventLoopDelay({ resolution: 1 });
loop.enable();

const emit = http.Server.prototype.emit;
http.Server.prototype.emit = function (event, req, res) {
  if (event === 'request') {
    const start = process.hrtime.bigint();
    const socket = req.socket;
    if (socket[finished] !== undefined) between.record(Math.max(1, Number(start - socket[finished])));
    res.once('finish', () => {
      const end = process.hrtime.bigint();
      socket[finished] = end;
      inServer.record(Math.max(1, Number(end - start)));
    });
  }
  return emit.apply(this, arguments);
};

const ms = (h) => ({ p50: h.percentile(50) / 1e6, p99: h.percentile(99) / 1e6 });
process.on('SIGUSR2', () => {
  writeFileSync(`${file}.tmp`, JSON.stringify({ inServer: ms(inServer), between: ms(between), loopDelay: ms(loop) }));
  renameSync(`${file}.tmp`, file);
  inServer = createHistogram();
  between = createHistogram();
  loop.reset();
});
