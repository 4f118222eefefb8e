import { BerthError, isErrorCode, type ErrorData } from './errors.js';
import type { ParamsOf, ResultOf } from './methods.js';
import type { ExecFrameType, ExecStreamParams } from './exec.js';
import type { BerthEvent, ImageBuildProgress, LogLine } from './types.js';

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
    params: { since?: number };
    line: BerthEvent | { type: 'hello'; seq: number; ts: string } | { type: 'ping'; ts: string };
  };
  'sessions.logs': {
    method: 'GET';
    path: '/sessions/:id/logs';
    params: { id: string; follow?: boolean; tail?: number; since?: string };
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
