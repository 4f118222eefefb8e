import { readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { expect } from 'vitest';
import { poll, type DaemonProcess } from './daemon.js';

/** Host processes of git's kind (git, its `timeout`/`prlimit` wrappers) working in or naming `dir`. */
export function gitProcessesIn(dir: string, exact = false): string[] {
  const found: string[] = [];
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      const comm = readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
      if (!/^(git|git-.*|timeout|prlimit)$/.test(comm)) continue;
      const cwd = readlinkSync(`/proc/${pid}/cwd`);
      const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ');
      if (exact ? cwd === dir : cwd.startsWith(dir) || cmd.includes(dir)) found.push(`${pid} ${comm} cwd=${cwd} ${cmd.slice(0, 160)}`);
    } catch {
      // gone
    }
  }
  return found;
}

export async function noGitLeft(d: DaemonProcess): Promise<void> {
  // A git killed at its deadline needs a moment to be reaped; nothing may outlive that. (The last
  // look is the one asserted: a fresh git of the import backstop, every 2 s, may start right after.)
  let left: string[] = [];
  await poll(async () => (left = gitProcessesIn(d.home)).length === 0, 200_000, 'no git child left in berth home').catch(() => {});
  expect(left).toEqual([]);
}
