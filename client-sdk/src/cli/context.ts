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
