import type { Command } from 'commander';
import type { BerthClient } from '../client.js';
import { BerthError } from '../protocol/index.js';
import type { Out } from './output.js';

/** What every command file gets from the program: the output sink and the (lazily connected) client. */
export interface CliContext {
  out: Out;
  connect: (cmd: Command) => BerthClient;
}

export function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

export function parsePairs(flag: string, pairs: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const p of pairs) {
    const i = p.indexOf('=');
    if (i <= 0) throw new BerthError('INVALID_PARAMS', `${flag} takes KEY=VALUE, got ${JSON.stringify(p)}`);
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

/** `90s`, `10m`, `2h`, `1d` or plain seconds → whole seconds; anything else is INVALID_PARAMS naming the flag. */
export function parseDurationSec(text: string, flag: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*(s|m|h|d)?$/.exec(text.trim());
  const n = m ? Number(m[1]) * { s: 1, m: 60, h: 3600, d: 86400 }[(m[2] ?? 's') as 's' | 'm' | 'h' | 'd'] : NaN;
  if (!Number.isFinite(n) || n < 1) {
    throw new BerthError('INVALID_PARAMS', `${flag} takes a duration like 90s, 10m or 2h, got ${JSON.stringify(text)}`);
  }
  return Math.round(n);
}
