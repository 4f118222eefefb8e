import { BerthError, type ExecResult, type LogLine } from '@berth/client-sdk/protocol';
import type { EventBus } from '../events/bus.js';
import type { ContainerRuntime, ExecSession } from '../runtime/port.js';
import type { SessionRecord, SessionsRepo } from '../store/sessions.js';
import { waitForSession } from './wait.js';

const DEFAULT_LOG_TAIL = 1000;

export interface ExecStreamRequest {
  cmd: string[];
  tty: boolean;
  stdin: boolean;
  env?: Record<string, string>;
  workdir?: string;
  cols?: number;
  rows?: number;
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
  constructor(private readonly d: { sessions: SessionsRepo; bus: EventBus; runtime: ContainerRuntime }) {}

  async logs(s: SessionRecord, tail?: number, since?: string): Promise<LogLine[]> {
    if (!s.containerId) return [];
    const out: LogLine[] = [];
    for await (const l of this.d.runtime.logs(s.containerId, { tail: tail ?? DEFAULT_LOG_TAIL, ...(since ? { since } : {}) })) out.push(l);
    return out;
  }

  /** Lines for GET /sessions/:id/logs; follows while the caller keeps the stream open. */
  async logStream(s: SessionRecord, opts: { tail?: number; since?: string; follow: boolean; signal: AbortSignal }): Promise<AsyncIterable<LogLine> | LogLine[]> {
    if (!s.containerId) {
      if (!opts.follow) return [];
      // Not created yet: wait for a container.
      const ready = await waitForSession(this.d.sessions, this.d.bus, s.id, (x) => x.containerId !== null, 120_000, opts.signal);
      if (!ready?.containerId) return [];
      return this.d.runtime.logs(ready.containerId, { ...opts, tail: opts.tail ?? DEFAULT_LOG_TAIL });
    }
    return this.d.runtime.logs(s.containerId, { ...opts, tail: opts.tail ?? DEFAULT_LOG_TAIL });
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
