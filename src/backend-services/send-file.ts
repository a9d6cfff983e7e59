/**
 * Streams a downloaded export file to a response (the operators' API and the console). A file that is gone by the
 * time it is opened (a job discarded or the disk wiped since it was listed) is a 404 like any missing file; a read
 * error once the response has begun ends the response at once (the client sees a cut transfer, shorter than its
 * Content-Length, never a hang) and is logged with its code. Never an unhandled stream error.
 */
import { createReadStream } from 'node:fs';
import type { Readable } from 'node:stream';
import type { Request, Response } from 'express';
import { AppError, ErrorCode } from '../http/errors.js';

export async function sendExportFile(
  req: Request, res: Response, file: { path: string; size: number }, headers: Record<string, string>,
  open: (path: string) => Readable = (p) => createReadStream(p),
): Promise<void> {
  res.set({ 'content-type': 'application/fhir+ndjson', 'content-length': String(file.size), 'cache-control': 'no-store', 'x-content-type-options': 'nosniff', ...headers });
  const stream = open(file.path);
  try {
    // pipe (not pipeline): a source error leaves the response to this function, to answer 404 while nothing is sent
    await new Promise<void>((resolve, reject) => {
      stream.once('error', reject);
      res.once('close', () => {
        stream.destroy(); // the client went away, or the response is over: the file is closed either way
        resolve();
      });
      stream.pipe(res);
    });
  } catch (err) {
    stream.unpipe(res);
    const code = (err as NodeJS.ErrnoException).code ?? 'error';
    req.log.warn({ event: 'bulk.file_stream_failed', code, bytes_sent: res.headersSent ? 'partial' : 0 }, 'bulk-data: reading an export file failed');
    if (!res.headersSent) {
      for (const h of ['content-type', 'content-length', 'content-disposition']) res.removeHeader(h);
      throw code === 'ENOENT'
        ? new AppError(ErrorCode.NOT_FOUND, 404, 'No such file (it is no longer on the server).')
        : new AppError(ErrorCode.INTERNAL, 500, 'The file could not be read.');
    }
    res.destroy();
  }
}
