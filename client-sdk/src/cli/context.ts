import type { Command } from 'commander';
import type { BerthClient } from '../client.js';
import { BerthError, parseLogTime } from '../protocol/index.js';
import type { Out } from './output.js';

/** What every command file gets from the program: the output sink and the (lazily connected) client. */
export interface CliContext {
  out: Out;
  connect: (cmd: Command) => BerthClient;
}

/** A CLI usage error: INVALID_PARAMS in the terms of flags, with a hint for the command line. */
export function usageError(message: string): BerthError {
  return new BerthError('INVALID_PARAMS', message, { hint: '`berth COMMAND --help` lists its options and what they take.' });
}

export function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

export function parsePairs(flag: string, pairs: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const p of pairs) {
    const i = p.indexOf('=');
    if (i <= 0) throw usageError(`${flag} takes KEY=VALUE, got ${JSON.stringify(p)}`);
    out[p.slice(0, i)] = p.slice(i + 1);
  }
  return out;
}

/** A command's own exit status (berth exec passes the command's through). */
export class ExitCode extends Error {
  constructor(readonly code: number) {
    super(`exit ${code}`);
  }
}

/** A whole number in [min, max] given to `flag`; anything else is INVALID_PARAMS in the flag's terms. */
export function wholeNumber(text: string, flag: string, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  const n = /^-?\d{1,15}$/.test(text.trim()) ? Number(text.trim()) : NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? `${min} or more` : `from ${min} to ${max}`;
    throw usageError(`${flag} takes a whole number ${range}, got ${JSON.stringify(text)}`);
  }
  return n;
}

/** One of `values` given to `flag`; anything else is INVALID_PARAMS naming them. */
export function oneOf<T extends string>(text: string, flag: string, values: readonly T[]): T {
  if (!(values as readonly string[]).includes(text)) {
    throw usageError(`${flag} must be one of ${values.join('|')}, got ${JSON.stringify(text)}`);
  }
  return text as T;
}

/** `90s`, `10m`, `2h`, `1d` or plain seconds → whole seconds; anything else is INVALID_PARAMS naming the flag. */
export function parseDurationSec(text: string, flag: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*(s|m|h|d)?$/.exec(text.trim());
  const n = m ? Number(m[1]) * { s: 1, m: 60, h: 3600, d: 86400 }[(m[2] ?? 's') as 's' | 'm' | 'h' | 'd'] : NaN;
  if (!Number.isFinite(n) || n < 1) {
    throw usageError(`${flag} takes a duration like 90s, 10m or 2h, got ${JSON.stringify(text)}`);
  }
  return Math.round(n);
}

/**
 * A point in time as docker's --since/--until take it: a duration back from `now` (`10m`, `1h30m`,
 * `2d`), Unix seconds (`1700000000`, fractions allowed), or a date/time (`2026-12-02`,
 * `2026-12-02T10:00:00Z`; without a zone, local time). Returns an ISO string.
 */
export function parseTimeArg(text: string, flag: string, now = Date.now()): string {
  const iso = parseLogTime(text, now);
  if (iso === null) throw usageError(`${flag} takes a time like 10m (ago), 2h30m, 2026-12-02T10:00:00Z or Unix seconds, got ${JSON.stringify(text)}`);
  return iso;
}

/** Runs `fn` with a signal that Ctrl-C (SIGINT) aborts, for commands that wait or follow. */
export async function interruptible<T>(fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const ctl = new AbortController();
  const onSig = () => ctl.abort();
  process.once('SIGINT', onSig);
  try {
    return await fn(ctl.signal);
  } finally {
    process.off('SIGINT', onSig);
  }
}
