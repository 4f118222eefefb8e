import { BerthError } from './errors.js';

/** The most lines `sessions.logs` answers in one array (the stream has no limit). */
export const LOGS_RPC_MAX_LINES = 10_000;
/** The most bytes of line text `sessions.logs` answers in one array. */
export const LOGS_RPC_MAX_BYTES = 16 * 1024 * 1024;
/** The longest `grep` pattern accepted. */
export const LOG_GREP_MAX = 1000;

/**
 * A log time filter as an ISO time, or null when `text` is none of: a duration ago (10m, 1h30m,
 * 500ms, 2d), Unix seconds (1764662400 or 1764662400.5), an RFC 3339 date or time
 * (2026-12-02, 2026-12-02T10:00:00Z, 2026-12-02 10:00:00+01:00). The one parser of these forms:
 * the CLI and berthd both use it.
 */
export function parseLogTime(text: string, now: number): string | null {
  const t = text.trim();
  if (/^(?:\d+(?:\.\d+)?(?:ms|s|m|h|d))+$/.test(t)) {
    const unit = { ms: 0.001, s: 1, m: 60, h: 3600, d: 86400 } as const;
    const sec = t.match(/\d+(?:\.\d+)?(?:ms|s|m|h|d)/g)!.reduce((acc, part) => {
      const [, n, u] = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/.exec(part)!;
      return acc + Number(n) * unit[u as keyof typeof unit];
    }, 0);
    return new Date(now - sec * 1000).toISOString();
  }
  if (/^\d+(\.\d+)?$/.test(t)) {
    const d = new Date(Number(t) * 1000);
    return Number.isFinite(d.getTime()) ? d.toISOString() : null;
  }
  const ms = /^\d{4}-\d{2}-\d{2}([T ][\d:.]+(Z|[+-]\d{2}:?\d{2})?)?$/i.test(t) ? Date.parse(t.replace(' ', 'T')) : NaN;
  return Number.isFinite(ms) ? new Date(ms).toISOString() : null;
}

/**
 * A UTC RFC 3339 time (the engine's nanosecond ones, or an ISO time) as a key that sorts as time
 * does: the fraction padded to 9 digits. A time with an offset is converted to UTC first (to the
 * millisecond).
 */
export function tsKey(ts: string): string {
  const m = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?Z$/.exec(ts);
  if (m) return `${m[1]}.${(m[2] ?? '').padEnd(9, '0')}Z`;
  const ms = Date.parse(ts);
  if (!Number.isFinite(ms)) return ts;
  const iso = new Date(ms).toISOString();
  return `${iso.slice(0, 19)}.${iso.slice(20, 23)}000000Z`;
}

/** `grep` as a RegExp, or LOG_FILTER_INVALID. */
export function compileLogGrep(source: string): RegExp {
  if (source.length > LOG_GREP_MAX) {
    throw new BerthError('LOG_FILTER_INVALID', `grep is ${source.length} characters long, more than ${LOG_GREP_MAX}`, { details: { field: 'grep' } });
  }
  try {
    return new RegExp(source);
  } catch (err) {
    throw new BerthError('LOG_FILTER_INVALID', `grep is not a regular expression: ${(err as Error).message}`, { details: { field: 'grep' } });
  }
}

/** A since/until filter as an ISO time, or LOG_FILTER_INVALID. */
export function logTimeFilter(text: string, field: 'since' | 'until', now: number): string {
  const iso = parseLogTime(text, now);
  if (iso === null) {
    throw new BerthError('LOG_FILTER_INVALID', `${field} takes a time like 10m (ago), 2026-12-02T10:00:00Z or Unix seconds, got ${JSON.stringify(text.slice(0, 100))}`, {
      details: { field },
    });
  }
  return iso;
}
