/**
 * The launch trace: keeps the log records of recent launches, from the very records the server writes, so that the
 * trace page and `smart-bff explain` tell the same story.
 *
 * The launch routes (exactly /launch, /launch/continue, /login, /callback) log through a tapped logger (log.ts
 * `tappedLogger`): each record is written to stdout as before (at LOG_LEVEL) and also handed, as its JSON line, to
 * `write` here at info and above, whatever LOG_LEVEL says — so the trace has the launch steps even under
 * LOG_LEVEL=warn, while stdout keeps only what LOG_LEVEL asks for. Every other route, the FHIR proxy first of all,
 * keeps the plain logger: no extra work there, at any level. Only records of launch events are kept, projected to
 * their known fields (story.ts), grouped into launches as they come (LaunchGrouper), and appended to the store.
 */
import type { RequestHandler } from 'express';
import type { DestinationStream } from 'pino';
import { tappedLogger, type Logger } from '../log.js';
import { buildStory, LaunchGrouper, matches, project, sortStories, type LaunchStory, type LogRecord, type StoryFilter } from './story.js';
import type { TraceStore } from './trace-store.js';

export class LaunchTrace {
  private readonly grouper = new LaunchGrouper({ maxRequests: 10_000 });
  private readonly logger: Logger;
  /** Lines the tap was handed, and records kept (for tests: nothing but the launch routes may reach the tap). */
  seen = 0;
  kept = 0;

  readonly store: TraceStore;

  constructor(private readonly o: { logger: Logger; store: TraceStore }) {
    this.store = o.store;
    const tap: DestinationStream = { write: (line: string) => this.write(line) };
    this.logger = tappedLogger(o.logger, tap);
  }

  /** Mounted on the launch routes only: their log lines go through the tap too. */
  readonly tapLaunchRoutes: RequestHandler = (req, _res, next) => {
    req.log = this.logger.child({ requestId: req.id });
    next();
  };

  /** One JSON line as written to the log. */
  write(line: string): void {
    this.seen++;
    let record: LogRecord;
    try {
      record = JSON.parse(line) as LogRecord;
    } catch {
      return;
    }
    const projected = project(record);
    if (!projected) return;
    for (const g of this.grouper.accept(projected)) {
      this.kept += g.records.length;
      // never fails a request: a store that is down loses trace records, nothing else
      this.store.append(g.key, g.records).catch(() => undefined);
    }
  }

  /** Recent launches, failed first (story.ts sortStories). */
  async stories(filter: StoryFilter = {}): Promise<LaunchStory[]> {
    const launches = await this.store.recent();
    return sortStories(launches.map((l) => buildStory(l.key, l.records)).filter((s) => matches(s, filter)));
  }

  async story(key: string): Promise<LaunchStory | undefined> {
    const launch = await this.store.get(key);
    return launch ? buildStory(launch.key, launch.records) : undefined;
  }
}
