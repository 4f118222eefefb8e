import { BerthError, isErrorCode, type ErrorData } from './errors.js';
import type { ParamsOf, ResultOf } from './methods.js';
import type { ExecFrameType, ExecStreamParams } from './exec.js';
import type { BerthEvent, BerthEventType, ImageBuildProgress, LogLine } from './types.js';

/**
 * The streaming routes of berthd, declared beside the methods: each with its HTTP method and
 * path, its params (query string for GET, JSON body for POST) and the type of its NDJSON lines
 * (or, for `sessions.exec`, which upgrades the connection, its frames: see exec.ts).
 * Before a stream starts, a refused request is answered with `{error: WireError}` and the status
 * the registry gives its code (httpStatusOf); once it runs, a failure is its last line,
 * `{error: WireError}`.
 */
export interface Streams {
  events: {
    method: 'GET';
    path: '/events';
    params: EventsParams;
    line: BerthEvent | EventGap | EventsHello | EventsPing;
  };
  'sessions.logs': {
    method: 'GET';
    path: '/sessions/:id/logs';
    /** As the `sessions.logs` method's, all of the history by default; `follow` goes on with new lines (across restarts) until the session is removed or `until` passes. */
    params: { id: string; follow?: boolean; tail?: number; since?: string; until?: string; grep?: string };
    line: LogLine | StreamErrorLine;
  };
  /** Upgrades the connection (`Upgrade: berth-exec`) to length-prefixed frames both ways: exec.ts. */
  'sessions.exec': {
    method: 'GET';
    path: '/sessions/:id/exec';
    params: ExecStreamParams;
    frame: ExecFrameType;
  };
  'images.build': { method: 'POST'; path: '/images/build'; params: ParamsOf<'images.build'>; line: ProgressLine<ResultOf<'images.build'>> };
  'images.buildDefaults': {
    method: 'POST';
    path: '/images/build-defaults';
    params: ParamsOf<'images.buildDefaults'>;
    line: ProgressLine<ResultOf<'images.buildDefaults'>>;
  };
}

export type StreamName = keyof Streams;

export const streamRoutes: { readonly [K in StreamName]: Pick<Streams[K], 'method' | 'path'> } = {
  events: { method: 'GET', path: '/events' },
  'sessions.logs': { method: 'GET', path: '/sessions/:id/logs' },
  'sessions.exec': { method: 'GET', path: '/sessions/:id/exec' },
  'images.build': { method: 'POST', path: '/images/build' },
  'images.buildDefaults': { method: 'POST', path: '/images/build-defaults' },
};

/** An error as every route and stream carries it: its message and the registry's data. */
export interface WireError extends ErrorData {
  message: string;
}

/** The last line of a stream that failed after it started. */
export interface StreamErrorLine {
  error: WireError;
}

export type ProgressLine<R> = { progress: ImageBuildProgress } | { result: R } | StreamErrorLine;

/** Any thrown value as a WireError (what is not a BerthError is an INTERNAL_ERROR). */
export function toWireError(err: unknown): WireError {
  const e = err instanceof BerthError ? err : new BerthError('INTERNAL_ERROR', err instanceof Error ? err.message : String(err));
  return { message: e.message, ...e.toData() };
}

/** A WireError (or what a peer sent as one) back as a BerthError. */
export function fromWireError(w: Partial<WireError> | undefined, fallback: string): BerthError {
  return new BerthError(isErrorCode(w?.code) ? w.code : 'INTERNAL_ERROR', w?.message ?? fallback, {
    ...(w?.hint ? { hint: w.hint } : {}),
    ...(w?.details ? { details: w.details } : {}),
  });
}

/**
 * GET /events?since=&epoch=&types=&session=&project= (types comma-separated). Filters run in berthd;
 * hello, ping and gap lines always pass. A filter it cannot read is refused with INVALID_PARAMS (400).
 */
export interface EventsParams {
  /** Replay the buffered events with a greater seq (of `epoch`, when given). */
  since?: number;
  /** The epoch `since` was read in (hello's). Another epoch means berthd restarted: a gap, then its buffer. */
  epoch?: string;
  /** Event types (`session.state`) or prefixes (`session.*`); absent: all. */
  types?: string[];
  /** Only events about this session (id, id prefix or name; a name not yet in use matches once it is). */
  session?: string;
  /** Only events about this project and its sessions. */
  project?: string;
}

/**
 * The first line of every /events stream. `seq` is the last event's number, `oldest` the oldest
 * still buffered (seq + 1 when none is), `epoch` the numbering they belong to: each berthd process
 * has its own, and numbers from 1 again.
 */
export interface EventsHello {
  type: 'hello';
  seq: number;
  oldest: number;
  epoch: string;
  ts: string;
}

/** Sent while the stream is quiet; `seq`: every event up to it was sent or filtered out. */
export interface EventsPing {
  type: 'ping';
  seq: number;
  ts: string;
}

/**
 * Events were lost between `since` and what follows: berthd restarted (`restarted`: the events of
 * the old daemon after `since` are gone, and the new one's buffer is replayed from its start), or
 * the client was away for longer than the buffer holds (`overflow`). What follows has seq > `seq`.
 * A consumer that mirrors state re-reads it (sessions.list) when it sees a gap.
 */
export interface EventGap {
  type: 'gap';
  seq: number;
  ts: string;
  data: { reason: 'restarted' | 'overflow'; since: number; epoch: string; previousEpoch: string | null; oldest: number };
}

/** Every event type berthd publishes (kept complete by the type below). */
export const eventTypes = [
  'daemon.started',
  'daemon.stopping',
  'daemon.health',
  'config.changed',
  'config.invalid',
  'engine.available',
  'engine.unavailable',
  'project.added',
  'project.removed',
  'agent.defined',
  'agent.removed',
  'session.created',
  'session.state',
  'session.removed',
  'session.imported',
  'session.usage',
  'session.activity',
  'session.budget',
  'notification',
  'image.build',
  'image.built',
  'image.removed',
  'task.added',
  'task.updated',
  'task.claimed',
  'task.completed',
  'task.released',
  'task.reviewed',
  'task.merged',
  'task.failed',
  'task.removed',
  'pool.created',
  'pool.updated',
  'pool.stopped',
  'schedule.added',
  'schedule.updated',
  'schedule.removed',
  'schedule.run',
  'task.file',
  'maintenance.run',
] as const satisfies readonly BerthEventType[];
type MissingEventType = Exclude<BerthEventType, (typeof eventTypes)[number]>;
const everyEventType: MissingEventType extends never ? true : MissingEventType = true;
void everyEventType;

/** The problem with an events `types` filter, or null: each entry an event type or `prefix.*` of some. */
export function eventTypeFilterProblem(patterns: readonly string[]): string | null {
  for (const p of patterns) {
    const known = p.endsWith('.*') ? eventTypes.some((t) => t.startsWith(p.slice(0, -1))) : (eventTypes as readonly string[]).includes(p);
    if (!known) return `unknown event type ${JSON.stringify(p)} (known: ${eventTypes.join(', ')}; a prefix as session.*)`;
  }
  return null;
}

/** Whether an event type passes a `types` filter (absent or empty: all do). */
export function eventTypeMatches(type: string, patterns: readonly string[] | undefined): boolean {
  if (!patterns || patterns.length === 0) return true;
  return patterns.some((p) => (p.endsWith('.*') ? type.startsWith(p.slice(0, -1)) : type === p));
}
