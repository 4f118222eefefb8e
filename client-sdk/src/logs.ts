import type { IncomingMessage, RequestOptions } from 'node:http';
import { StringDecoder } from 'node:string_decoder';
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
 * delivered (lines with the same timestamp as that one are not repeated). Without `follow`, a
 * stream that breaks is an error (CONNECTION_LOST), never a silently shorter history.
 */
export async function* followLogs(send: Send, id: string, opts: LogOptions = {}): AsyncGenerator<LogLine> {
  for await (const batch of followLogBatches(send, id, opts)) yield* batch;
}

/** followLogs in batches, as they arrive (what a consumer of a long history wants: fewer turns). */
export async function* followLogBatches(send: Send, id: string, opts: LogOptions = {}): AsyncGenerator<LogLine[]> {
  let since = opts.since;
  let tail = opts.tail;
  // The last time delivered (raw and as a key), and how many of each line at that time: what a
  // resumed stream, starting at that time, repeats.
  let lastTs: string | null = null;
  let lastKey: string | null = null;
  let seenAtLast = new Map<string, number>();
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
    let broken: unknown = null;
    let failed: WireError | null = null;
    const decoder = new StringDecoder('utf8');
    let rest = '';
    try {
      for await (const chunk of res as AsyncIterable<Buffer>) {
        const text = rest + decoder.write(chunk);
        const nl = text.lastIndexOf('\n');
        if (nl < 0) {
          rest = text;
          continue;
        }
        rest = text.slice(nl + 1);
        const out: LogLine[] = [];
        for (const raw of text.slice(0, nl).split('\n')) {
          if (!raw) continue;
          let l: LogLine & { error?: WireError };
          try {
            l = JSON.parse(raw) as LogLine & { error?: WireError };
          } catch {
            continue; // a damaged stored line: berthd passes lines as stored
          }
          if (l.error) {
            failed = l.error;
            break;
          }
          if (opts.follow) {
            const key = `${l.stream}\u0000${l.line}`;
            if (l.ts !== lastTs) {
              const k = tsKey(l.ts);
              if (replay) {
                if (k < replay.key) continue;
                if (k > replay.key) replay = null;
              }
              lastTs = l.ts;
              lastKey = k;
              seenAtLast = new Map();
            }
            if (replay) {
              const n = replay.seen.get(key) ?? 0;
              if (n > 0) {
                replay.seen.set(key, n - 1);
                continue;
              }
            }
            seenAtLast.set(key, (seenAtLast.get(key) ?? 0) + 1);
          }
          out.push(l);
        }
        if (out.length) yield out;
        if (failed) break;
      }
    } catch (err) {
      if (opts.signal?.aborted) return;
      broken = err;
    } finally {
      res.destroy();
    }
    if (failed) throw fromWireError(failed, 'the log stream failed');
    if (opts.signal?.aborted) return;
    if (!opts.follow) {
      if (broken || !res.complete) throw new BerthError('CONNECTION_LOST', 'the log stream broke before its end', { cause: broken ?? undefined });
      return;
    }
    // A clean end: the session was removed and read, or until passed. A broken stream means berthd went away: resume.
    if (!broken && res.complete) return;
    since = lastTs ?? since;
    tail = undefined;
    if (lastKey !== null) replay = { key: lastKey, seen: new Map(seenAtLast) };
  }
}
