import {
  BerthError,
  compileLogGrep,
  logTimeFilter,
  LOGS_RPC_MAX_BYTES,
  LOGS_RPC_MAX_LINES,
  tsKey,
  type ExecResult,
  type LogLine,
} from '@berth/client-sdk/protocol';
import type { EventBus } from '../events/bus.js';
import { parseStored, type LogReadOptions, type LogReader, type StoredLine } from '../logs/reader.js';
import type { ContainerRuntime, ExecSession } from '../runtime/port.js';
import type { SessionRecord, SessionsRepo } from '../store/sessions.js';
import { waitForSession } from './wait.js';

export interface ExecStreamRequest {
  cmd: string[];
  tty: boolean;
  stdin: boolean;
  env?: Record<string, string>;
  workdir?: string;
  cols?: number;
  rows?: number;
}

/** What a log read asks for, as the caller wrote it (times as `berth logs` takes them). */
export interface LogQuery {
  tail?: number;
  since?: string;
  until?: string;
  grep?: string;
  follow?: boolean;
  signal?: AbortSignal;
}

/** A session whose logs can be read: a live one, or one removed whose record berth keeps. */
export interface LogSubject {
  id: string;
  live: SessionRecord | null;
}

/** A running session's container, or SESSION_NOT_RUNNING. */
function containerOf(s: SessionRecord): string {
  if (s.state !== 'running' || !s.containerId) {
    throw new BerthError('SESSION_NOT_RUNNING', `session ${s.name} is ${s.state}`, { details: { id: s.id, state: s.state } });
  }
  return s.containerId;
}

/** What goes in and out of a session's container: its output, and commands run in it as its user. */
export class SessionIo {
  constructor(private readonly d: { sessions: SessionsRepo; bus: EventBus; runtime: ContainerRuntime; logs?: LogReader | undefined; logsCaughtUp?: ((id: string) => Promise<void>) | undefined; now: () => Date }) {}

  /**
   * The `sessions.logs` method: the lines in one array, at most LOGS_RPC_MAX_LINES of them
   * (LOGS_RPC_MAX_BYTES of text); more is LOGS_TOO_MANY_LINES, never a silent cut.
   */
  async logs(s: LogSubject, q: LogQuery): Promise<LogLine[]> {
    const ctl = new AbortController();
    const out: LogLine[] = [];
    let bytes = 0;
    try {
      for await (const b of await this.logBatches(s, { ...q, follow: false, signal: ctl.signal })) {
        for (const l of b) {
          bytes += l.length;
          if (out.length >= LOGS_RPC_MAX_LINES || bytes > LOGS_RPC_MAX_BYTES) {
            throw new BerthError('LOGS_TOO_MANY_LINES', `more than ${LOGS_RPC_MAX_LINES} lines (or ${LOGS_RPC_MAX_BYTES / 1024 / 1024} MiB) would come back`, {
              details: { id: s.id, maxLines: LOGS_RPC_MAX_LINES, maxBytes: LOGS_RPC_MAX_BYTES },
            });
          }
          const rec = parseStored(l);
          if (rec) out.push(rec);
        }
      }
    } finally {
      ctl.abort();
    }
    return out;
  }

  /**
   * The lines for GET /sessions/:id/logs in batches, from berth's log store; the filters are
   * checked before (LOG_FILTER_INVALID), so a refused read never starts a stream. A live session
   * the store has nothing of (made before berth kept logs) is read from the engine instead.
   */
  async logBatches(s: LogSubject, q: LogQuery): Promise<AsyncIterable<StoredLine[]>> {
    const now = this.d.now().getTime();
    const o: LogReadOptions = {
      ...(q.tail !== undefined ? { tail: q.tail } : {}),
      ...(q.since !== undefined ? { since: logTimeFilter(q.since, 'since', now) } : {}),
      ...(q.until !== undefined ? { until: logTimeFilter(q.until, 'until', now) } : {}),
      ...(q.grep !== undefined ? { grep: compileLogGrep(q.grep) } : {}),
      // A removed session has nothing more to come; a live one's follow ends when it is removed.
      ...(q.follow && s.live ? { follow: true, ended: () => this.d.sessions.get(s.id) === undefined } : {}),
      ...(q.signal ? { signal: q.signal } : {}),
    };
    if (this.d.logs && (!s.live || (await this.d.logs.exists(s.id)))) {
      if (s.live) await this.d.logsCaughtUp?.(s.id);
      return this.d.logs.batches(s.id, o);
    }
    return s.live ? this.engineBatches(s.live, o) : (async function* () {})();
  }

  /** The engine's log of the session's current container (all of it, or tail), filtered here. */
  private async *engineBatches(s: SessionRecord, o: LogReadOptions): AsyncGenerator<StoredLine[]> {
    let containerId = s.containerId;
    if (!containerId) {
      if (!o.follow) return;
      // Not created yet: wait for a container.
      const ready = await waitForSession(this.d.sessions, this.d.bus, s.id, (x) => x.containerId !== null, 120_000, o.signal);
      if (!ready?.containerId) return;
      containerId = ready.containerId;
    }
    const until = o.until !== undefined ? tsKey(o.until) : null;
    const lines = this.d.runtime.logs(containerId, {
      ...(o.tail !== undefined ? { tail: o.tail } : {}),
      ...(o.since !== undefined ? { since: o.since } : {}),
      follow: o.follow === true,
      ...(o.signal ? { signal: o.signal } : {}),
    });
    for await (const l of lines) {
      if (until !== null && tsKey(l.ts) > until) {
        if (o.follow) return;
        continue;
      }
      if (o.grep && !o.grep.test(l.line)) continue;
      yield [JSON.stringify(l)];
    }
  }

  async exec(s: SessionRecord, cmd: string[], timeoutSec: number): Promise<ExecResult> {
    return this.d.runtime.exec(containerOf(s), cmd, { timeoutSec, user: s.spec.user });
  }

  /**
   * A command attached to the running session (the `sessions.exec` stream), as the session's own
   * user, like exec. The caller owns the returned session and must close() it.
   */
  async execStream(s: SessionRecord, p: ExecStreamRequest): Promise<ExecSession> {
    return this.d.runtime.execStream(containerOf(s), {
      cmd: p.cmd,
      tty: p.tty,
      stdin: p.stdin,
      user: s.spec.user,
      ...(p.env ? { env: p.env } : {}),
      ...(p.workdir ? { workdir: p.workdir } : {}),
      ...(p.tty && p.cols && p.rows ? { size: { cols: p.cols, rows: p.rows } } : {}),
    });
  }
}
