/** Shared by the boundary-host test files (attacks on the host's resources and paths). */
import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, readdirSync, readlinkSync, realpathSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { BerthClient, BerthError, type Session } from '@berth/client-sdk';
import { expect } from 'vitest';
import { commitFiles, hostGit } from './git.js';
import { TEST_UID, makeRepo, poll, sh, startWithProject, tempDir, type DaemonProcess } from './daemon.js';

/** A git blocked on an agent's FIFO is killed after 30 s here, not the default 120 s: the tests wait for that deadline. */
export const FAST_GIT = { BERTH_GIT_TIMEOUT_SEC: '30' };


export const MB = 1024 * 1024;
/** Project names unique to this run: networks are per project name on a shared engine. */
export const uniq = randomBytes(3).toString('hex');
export const measured: string[] = [];
export const note = (s: string) => {
  measured.push(s);
  console.log(`[boundary-host] ${s}`);
};

export const codeOf = (p: Promise<unknown>) => p.then(() => 'ok', (e: unknown) => (e instanceof BerthError ? e.code : `not a BerthError: ${String(e)}`));

/** A client for calls that legitimately take long on a busy box (hang guard only). */
export const patient = (d: DaemonProcess) => new BerthClient({ socketPath: d.socket, timeoutMs: 600_000 });

export function procKb(pid: number, key: 'VmRSS' | 'VmHWM'): number {
  const m = new RegExp(`^${key}:\\s+(\\d+)`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m?.[1] ?? 0);
}

/** Resets the process's peak RSS to its current RSS (Linux clear_refs 5), so VmHWM is the peak from now on. */
export function resetPeak(pid: number): void {
  writeFileSync(`/proc/${pid}/clear_refs`, '5');
}

/** Runs `fn` and returns by how much berthd's resident set peaked above what it was before. */
export async function peakGrowthMb<T>(pid: number, fn: () => Promise<T>): Promise<{ value: T; growthMb: number; beforeMb: number; peakMb: number }> {
  const before = procKb(pid, 'VmRSS');
  resetPeak(pid);
  const value = await fn();
  const peak = procKb(pid, 'VmHWM');
  return { value, growthMb: Math.round((peak - before) / 1024), beforeMb: Math.round(before / 1024), peakMb: Math.round(peak / 1024) };
}

/** Blocks actually used on disk (a sparse file counts for what it occupies). */
export function duBytes(path: string): number {
  if (!existsSync(path)) return 0;
  return Number(execFileSync('du', ['-s', '-B1', path], { encoding: 'utf8' }).split(/\s/)[0]);
}

/** berthd's inotify watches: the `inotify wd:` lines of every inotify descriptor it holds. */
export function inotifyWatches(pid: number): number {
  let n = 0;
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    let target = '';
    try {
      target = readlinkSync(`/proc/${pid}/fd/${fd}`);
    } catch {
      continue;
    }
    if (target !== 'anon_inode:inotify') continue;
    n += readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8').split('\n').filter((l) => l.startsWith('inotify wd:')).length;
  }
  return n;
}

/** CPU time berthd used so far, in clock ticks (utime + stime). */
export function cpuTicks(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
  return Number(rest[11]) + Number(rest[12]);
}

export { gitProcessesIn, noGitLeft } from './git-procs.js';

/** git as the project's owner (uid 1000), so nothing the test itself runs in an owner's repo runs as root. */
export function ownerGit(cwd: string, ...args: string[]): string {
  return execFileSync('git', ['-c', 'safe.directory=*', '-c', 'user.email=o@berth.dev', '-c', 'user.name=owner', ...args], {
    cwd,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    uid: TEST_UID,
    gid: TEST_UID,
    env: { PATH: process.env.PATH, HOME: '/nonexistent', GIT_CONFIG_NOSYSTEM: '1' },
  }).trim();
}

export const inBox = (d: DaemonProcess, s: Session, script: string, timeoutSec = 300) =>
  patient(d).sessions.exec({ id: s.id, cmd: sh(script), timeoutSec }).then((r) => {
    if (r.exitCode !== 0) throw new Error(`in-container script failed (${r.exitCode}): ${r.stderr}\n${script}`);
    return r;
  });

/** Any container of this daemon bind-mounting something that is, or resolves into, `outside`. */
export function mountsInto(d: DaemonProcess, outside: string): string[] {
  const ids = execFileSync('docker', ['ps', '-aq', '--filter', `label=dev.berth.instance=${d.instanceId}`], { encoding: 'utf8' }).split('\n').filter(Boolean);
  const hits: string[] = [];
  const realOutside = realpathSync(outside);
  for (const id of ids) {
    const mounts = JSON.parse(execFileSync('docker', ['inspect', '--format', '{{json .Mounts}}', id], { encoding: 'utf8' })) as { Source: string }[];
    for (const m of mounts) {
      let real = m.Source;
      try {
        real = realpathSync(m.Source);
      } catch {
        // volume paths the test cannot resolve
      }
      if (m.Source.startsWith(outside) || real.startsWith(realOutside)) hits.push(`${id.slice(0, 12)}: ${m.Source} -> ${real}`);
    }
  }
  return hits;
}

/** For each file's afterAll: what was measured, in one place. */
export const printMeasured = () => {
  if (measured.length) console.log(`[boundary-host] measurements:\n  ${measured.join('\n  ')}`);
};

