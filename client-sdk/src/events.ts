import type { IncomingMessage, RequestOptions } from 'node:http';
import { BerthError, fromWireError, streamRoutes, type BerthEvent, type EventGap, type EventsHello, type EventsParams, type Streams, type WireError } from './protocol/index.js';

/** One request on berthd's socket, answered with its response head (BerthClient's own). */
export type Send = (options: RequestOptions) => Promise<IncomingMessage>;

/** What `events()` yields: berthd's events, and a gap where some were lost (see EventGap). */
export type StreamedEvent = BerthEvent | EventGap;

export interface EventsOptions extends EventsParams {
  /** Ends the iteration (it returns; nothing is thrown). */
  signal?: AbortSignal;
  /**
   * Default true: when berthd goes away (restart, kill -9, a broken connection) wait for it with
   * backoff and resume after the last event delivered; false: the iteration ends with the stream.
   */
  reconnect?: boolean;
}

/** What the follower reports besides events: each stream's hello, and when it starts waiting for berthd. */
export type FollowItem = { hello: EventsHello } | { event: StreamedEvent };

export interface FollowHooks {
  send: Send;
  onConnected?: () => void;
  onReconnecting?: (cause: unknown) => void;
  /** Pause before reconnect attempt `n` (from 0); default 250 ms doubling to 5 s. */
  backoffMs?: (n: number) => number;
}

const defaultBackoff = (n: number) => Math.min(250 * 2 ** n, 5000);

/** Whether a failure is berthd being away (worth waiting for), as opposed to a refusal. */
export function daemonAway(err: unknown): boolean {
  if (!(err instanceof BerthError)) return false;
  if (err.code === 'DAEMON_UNREACHABLE') return err.details?.errno !== 'EACCES' && err.details?.errno !== 'EPERM';
  return err.code === 'CONNECTION_LOST' || err.code === 'TIMEOUT';
}

export function eventsPath(p: EventsParams): string {
  const q = new URLSearchParams();
  if (p.since !== undefined) q.set('since', String(p.since));
  if (p.epoch !== undefined) q.set('epoch', p.epoch);
  if (p.types?.length) q.set('types', p.types.join(','));
  if (p.session !== undefined) q.set('session', p.session);
  if (p.project !== undefined) q.set('project', p.project);
  const qs = q.toString();
  return qs ? `${streamRoutes.events.path}?${qs}` : streamRoutes.events.path;
}

/**
 * GET /events, across reconnects: each new stream asks for what follows the last event delivered
 * (`since` and the epoch it counts in). berthd answers a `since` it no longer has (a restart, or a
 * buffer that moved on) with a gap line, which is passed on; an event at or before the last one
 * delivered in the same epoch is dropped, so nothing comes twice.
 */
export async function* followEvents(hooks: FollowHooks, opts: EventsOptions): AsyncGenerator<FollowItem> {
  const { signal } = opts;
  const reconnect = opts.reconnect ?? true;
  const backoff = hooks.backoffMs ?? defaultBackoff;
  let since = opts.since;
  let epoch = opts.epoch;
  for (let attempt = 0; ; attempt++) {
    if (signal?.aborted) return;
    let res: IncomingMessage | null = null;
    let cause: unknown = null;
    try {
      res = await hooks.send({
        path: eventsPath({ ...opts, ...(since !== undefined ? { since } : {}), ...(epoch !== undefined ? { epoch } : {}) }),
        method: 'GET',
        ...(signal ? { signal } : {}),
      });
    } catch (err) {
      if (signal?.aborted) return;
      if (!reconnect || !daemonAway(err)) throw err;
      cause = err;
    }
    if (res && res.statusCode !== 200) {
      const failure = refusal(res.statusCode ?? 0, await readAll(res));
      // 503: berthd is stopping or starting; anything else is a refusal of what was asked.
      if (!reconnect || res.statusCode !== 503) throw failure;
      cause = failure;
      res = null;
    }
    if (res) {
      attempt = -1;
      hooks.onConnected?.();
      const stop = () => res!.destroy();
      signal?.addEventListener('abort', stop, { once: true });
      try {
        for await (const raw of ndjsonLines(res)) {
          const line = raw as Streams['events']['line'];
          if (line.type === 'hello') {
            // Another epoch than ours: berthd sends a gap next, which sets where its numbering resumes.
            since ??= line.seq;
            epoch = line.epoch;
            yield { hello: line };
          } else if (line.type === 'ping') {
            if (since === undefined || line.seq > since) since = line.seq;
          } else if (line.type === 'gap') {
            since = line.seq;
            yield { event: line };
          } else {
            if (since !== undefined && line.seq <= since) continue;
            since = line.seq;
            yield { event: line };
          }
        }
      } catch (err) {
        if (signal?.aborted) return;
        cause = err;
      } finally {
        signal?.removeEventListener('abort', stop);
        res.destroy();
      }
      if (signal?.aborted) return;
      if (!reconnect) {
        if (cause) throw cause instanceof BerthError ? cause : new BerthError('CONNECTION_LOST', `the events stream broke: ${(cause as Error).message}`, { cause });
        return;
      }
      cause ??= new BerthError('CONNECTION_LOST', 'berthd ended the events stream');
    }
    hooks.onReconnecting?.(cause);
    await pause(backoff(Math.max(0, attempt)), signal);
  }
}

/** The JSON lines of a response; a partial last line (the daemon died mid-write) is dropped. */
async function* ndjsonLines(res: IncomingMessage): AsyncGenerator<unknown> {
  let buf = '';
  res.setEncoding('utf8');
  for await (const chunk of res as AsyncIterable<string>) {
    buf += chunk;
    for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      if (line.trim()) yield JSON.parse(line);
    }
  }
}

/** A stream refused before it started: its `{error}` body (or, when it has none, the status). */
export function refusal(status: number, text: string): BerthError {
  let e: WireError | undefined;
  try {
    e = (JSON.parse(text || '{}') as { error?: WireError }).error;
  } catch {
    // not JSON: the status says it
  }
  return fromWireError(e, `HTTP ${status}`);
}

export function readAll(res: IncomingMessage): Promise<string> {
  return new Promise((resolve) => {
    let t = '';
    res.setEncoding('utf8');
    res.on('data', (c: string) => (t += c));
    res.on('end', () => resolve(t));
    res.on('error', () => resolve(t));
  });
}

/** Waits `ms`, or less when `signal` aborts. */
export function pause(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise<void>((resolve) => {
    const done = () => {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const t = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}
