import type { IncomingMessage, RequestOptions } from 'node:http';
import { createInterface } from 'node:readline';
import { readAll } from './events.js';
import { BerthError, fromWireError, streamRoutes, tsKey, type LogLine, type WireError } from './protocol/index.js';

/** One request on berthd's socket, answered with its response head (BerthClient's own). */
export type Send = (options: RequestOptions) => Promise<IncomingMessage>;

export interface LogOptions {
  follow?: boolean;
  tail?: number;
  since?: string;
  until?: string;
  /** A JavaScript regular expression the line's text must match. */
  grep?: string;
  signal?: AbortSignal;
}

/**
 * Log lines of a session from GET /sessions/:id/logs: all of its history unless tail, since, until
 * or grep narrow it. With `follow`, keeps going until `signal` aborts, the session is removed, or
 * `until` passes; if berthd restarts meanwhile, it reconnects and resumes after the last line it
 * delivered (lines with the same timestamp as that one are not repeated).
 */
export async function* followLogs(send: Send, id: string, opts: LogOptions = {}): AsyncGenerator<LogLine> {
  let since = opts.since;
  let tail = opts.tail;
  let lastTs: string | null = null;
  let lastKey: string | null = null;
  const seenAtLast = new Map<string, number>();
  let replay: { key: string; seen: Map<string, number> } | null = null;
  for (let attempt = 0; ; attempt++) {
    const q = new URLSearchParams();
    if (opts.follow) q.set('follow', '1');
    if (tail !== undefined) q.set('tail', String(tail));
    if (since) q.set('since', since);
    if (opts.until) q.set('until', opts.until);
    if (opts.grep !== undefined) q.set('grep', opts.grep);
    let res: IncomingMessage;
    try {
      res = await send({ path: `${streamRoutes['sessions.logs'].path.replace(':id', encodeURIComponent(id))}?${q}`, method: 'GET', ...(opts.signal ? { signal: opts.signal } : {}) });
    } catch (err) {
      if (opts.signal?.aborted) return;
      if (opts.follow && err instanceof BerthError && (err.code === 'DAEMON_UNREACHABLE' || err.code === 'CONNECTION_LOST') && attempt < 600) {
        await new Promise((r) => setTimeout(r, 250));
        continue;
      }
      throw err;
    }
    if (res.statusCode !== 200) {
      const text = await readAll(res);
      let e: WireError | undefined;
      try {
        e = (JSON.parse(text || '{}') as { error?: WireError }).error;
      } catch {
        // not JSON: the status says it
      }
      throw fromWireError(e, `HTTP ${res.statusCode}`);
    }
    attempt = 0;
    let broken = false;
    const lines = createInterface({ input: res, crlfDelay: Infinity });
    let failed: WireError | null = null;
    try {
      for await (const raw of lines) {
        if (!raw) continue;
        const l = JSON.parse(raw) as LogLine & { error?: WireError };
        if (l.error) {
          failed = l.error;
          break;
        }
        // A resumed stream starts at the last time delivered: skip what was delivered (as many of
        // each line at that time as were), then pass everything as it comes.
        const key = `${l.stream}\u0000${l.line}`;
        const k = tsKey(l.ts);
        if (replay) {
          if (k < replay.key) continue;
          const n = replay.seen.get(key) ?? 0;
          if (k === replay.key && n > 0) {
            replay.seen.set(key, n - 1);
            continue;
          }
          if (k > replay.key) replay = null;
        }
        if (k !== lastKey) {
          lastKey = k;
          lastTs = l.ts;
          seenAtLast.clear();
        }
        seenAtLast.set(key, (seenAtLast.get(key) ?? 0) + 1);
        yield l;
      }
    } catch (err) {
      if (opts.signal?.aborted) return;
      broken = true;
    } finally {
      res.destroy();
    }
    if (failed) throw fromWireError(failed, 'the log stream failed');
    if (opts.signal?.aborted) return;
    // A clean end means the container stopped; a broken stream means berthd went away: resume.
    if (!opts.follow || (!broken && res.complete)) return;
    since = lastTs ?? since;
    tail = undefined;
    if (lastKey !== null) replay = { key: lastKey, seen: new Map(seenAtLast) };
  }
}

