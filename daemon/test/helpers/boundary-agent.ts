import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, existsSync, lstatSync, mkdirSync, readFileSync, readdirSync, readlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { BerthClient, BerthError, type Session } from '@berth/client-sdk';
import { expect } from 'vitest';
import { commitFiles, hostGit } from './git.js';
import { TEST_UID, makeRepo, poll, sh, startDaemon, startWithProject, tempDir, type DaemonProcess } from './daemon.js';

/** A git blocked on an agent's FIFO is killed after 30 s here, not the default 120 s: the tests wait for that deadline. */
export const FAST_GIT = { BERTH_GIT_TIMEOUT_SEC: '30' };

/**
 * Attacks from inside the agent's container on what berthd does with the agent's checkout, each
 * named after the threat it covers:
 *  1. a merge (or a repair) reaching other sessions' checkouts, other projects, or the user's ignored files;
 *  2. host files read through entries of the agent's `.git/index` (or of its commits' trees);
 *  3. the agent's object store (alternates, loose objects, packs, commit-graph) pointing at
 *     /dev/zero, a FIFO or another project's objects; FIFOs berthd's git opens.
 * Marker files prove nothing ran, a secret outside every checkout proves nothing leaked, snapshots
 * (paths, types, contents) prove nothing was lost. Deadlines only guard against hangs; "not
 * blocked" is asserted as an order (the other call answers while the stuck one is still out).
 */

export const MB = 1024 * 1024;
export const uniq = randomBytes(3).toString('hex');
export const notes: string[] = [];
export const note = (s: string) => {
  notes.push(s);
  console.log(`[boundary-agent] ${s}`);
};
/** For each file's afterAll: what the attacks led to, in one place. */
export const printNotes = () => {
  if (notes.length) console.log(`[boundary-agent] observations:\n  ${notes.join('\n  ')}`);
};

export const codeOf = (p: Promise<unknown>) => p.then(() => 'ok', (e: unknown) => (e instanceof BerthError ? e.code : `not a BerthError: ${String(e)}`));
export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A client for calls that may legitimately take long (hang guard only). */
export const patient = (d: DaemonProcess) => new BerthClient({ socketPath: d.socket, timeoutMs: 600_000 });

/** Runs `script` in the session's container (as the agent) and fails on a non-zero exit. */
export async function inBox(d: DaemonProcess, s: Session, script: string, timeoutSec = 300): Promise<string> {
  const c = patient(d);
  try {
    const r = await c.sessions.exec({ id: s.id, cmd: sh(script), timeoutSec });
    if (r.exitCode !== 0) throw new Error(`in-container script failed (${r.exitCode}): ${r.stderr}\n${r.stdout}\n--- script:\n${script}`);
    return r.stdout;
  } finally {
    c.close();
  }
}

export const lastLine = (out: string) => out.trim().split('\n').pop()!.trim();

/** Every object of a repository, raw (`cat-file --batch`), as the test (root) reads it. */
export function allObjects(repo: string): Buffer {
  return execFileSync('git', ['-c', 'safe.directory=*', 'cat-file', '--batch-all-objects', '--batch'], {
    cwd: repo,
    maxBuffer: 1024 * MB,
    env: { PATH: process.env.PATH, HOME: '/nonexistent', GIT_CONFIG_NOSYSTEM: '1' },
  });
}

export const hasObject = (repo: string, sha: string) => {
  try {
    hostGit(repo, 'cat-file', '-e', sha);
    return true;
  } catch {
    return false;
  }
};

export const tipOf = (repo: string, ref: string) => {
  try {
    return hostGit(repo, 'rev-parse', '-q', '--verify', ref);
  } catch {
    return null;
  }
};

/** Paths under `root` (links not followed) with their type and content hash / link text. */
export function snapshot(root: string, skip: (rel: string) => boolean = () => false): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (rel: string) => {
    if (rel && skip(rel)) return;
    const p = rel ? join(root, rel) : root;
    const st = lstatSync(p);
    if (st.isSymbolicLink()) out[rel] = `link -> ${readlinkSync(p)}`;
    else if (st.isDirectory()) {
      out[rel || '.'] = 'dir';
      for (const e of readdirSync(p).sort()) walk(rel ? `${rel}/${e}` : e);
    } else if (st.isFile()) out[rel] = `file ${createHash('sha256').update(readFileSync(p)).digest('hex')}`;
    else out[rel] = `special ${st.mode.toString(8)}`;
  };
  walk('');
  return out;
}
export const noIndex = (rel: string) => rel === '.git/index' || rel === '.git/index.lock';

export { gitProcessesIn, noGitLeft } from './git-procs.js';

/** A second project in `d`, owned by the test uid, with `files` committed. Returns its path. */
export async function addProject(d: DaemonProcess, name: string, files: Record<string, string>): Promise<string> {
  const repo = await makeRepo(join(d.home, 'projects', name));
  commitFiles(repo, files, `initial of ${name}`);
  await d.client.projects.add({ name, path: repo });
  return repo;
}

export const shadowDir = (d: DaemonProcess, s: Session) => join(d.home, 'shadow', s.id.replace(/[^A-Za-z0-9_-]/g, '_'));

/** A valid index (v2) with the given entries, checksum and all: what an agent can write as its `.git/index`. */
export function gitIndex(entries: { name: string; sha: string; mode?: number }[]): Buffer {
  const sorted = [...entries].sort((a, b) => Buffer.compare(Buffer.from(a.name), Buffer.from(b.name)));
  const head = Buffer.alloc(12);
  head.write('DIRC', 0, 'latin1');
  head.writeUInt32BE(2, 4);
  head.writeUInt32BE(sorted.length, 8);
  const parts = [head];
  for (const e of sorted) {
    const name = Buffer.from(e.name);
    // ctime, mtime, dev, ino zero (so git would re-read the file), then mode, uid, gid, size, sha, flags, name, NULs.
    const entry = Buffer.alloc((62 + name.length + 8) & ~7);
    entry.writeUInt32BE(e.mode ?? 0o100644, 24);
    entry.writeUInt32BE(TEST_UID, 28);
    entry.writeUInt32BE(TEST_UID, 32);
    entry.writeUInt32BE(1, 36);
    Buffer.from(e.sha, 'hex').copy(entry, 40);
    entry.writeUInt16BE(Math.min(name.length, 0xfff), 60);
    name.copy(entry, 62);
    parts.push(entry);
  }
  const body = Buffer.concat(parts);
  return Buffer.concat([body, createHash('sha1').update(body).digest()]);
}

/** Shell that writes `bytes` to `path` inside the container. */
export const writeBytes = (path: string, bytes: Buffer) => `echo '${bytes.toString('base64')}' | base64 -d > ${path}`;

/** A directory outside every checkout with a secret, and a world-writable markers directory. */
export async function outsideDir(): Promise<{ dir: string; secret: string; secretText: string; markers: string }> {
  const dir = await tempDir('bt-evil-');
  const secretText = `TOPSECRET-${randomBytes(6).toString('hex')}`;
  const secret = join(dir, 'secret.txt');
  writeFileSync(secret, `${secretText}\n`);
  const markers = join(dir, 'markers');
  mkdirSync(markers);
  // Whatever might run (hooks as the project owner, drivers as root) must be able to leave its marker.
  chmodSync(markers, 0o777);
  chmodSync(dir, 0o755);
  return { dir, secret, secretText, markers };
}

// ---------------------------------------------------------------------------------------------------
// Threat 1: a merge reaching other checkouts; repairs deleting what berth did not make.
// ---------------------------------------------------------------------------------------------------

