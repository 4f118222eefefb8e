import { existsSync, statSync } from 'node:fs';
import { readFile, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { BerthError, type Session } from '@berth/client-sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { commitFiles, hostGit } from '../helpers/git.js';
import { TEST_UID, makeRepo, poll, sh, startDaemon, startWithProject, type DaemonProcess } from '../helpers/daemon.js';

const codeOf = (p: Promise<unknown>) => p.then(() => 'ok', (e: unknown) => (e instanceof BerthError ? e.code : String(e)));
const inBox = (d: DaemonProcess, s: Session, script: string) => d.client.sessions.exec({ id: s.id, cmd: sh(script) });

describe('checkouts: a branch and checkout per write session', () => {
  let d: DaemonProcess;
  let repo: string;

  beforeAll(async () => {
    ({ d, repo } = await startWithProject());
    commitFiles(repo, { 'README.md': 'hello\n', 'src/app.txt': 'line 1\nline 2\nline 3\n' }, 'initial');
    await d.client.agents.define({ name: 'coder', command: sh('sleep 3600') });
    await d.client.agents.define({ name: 'reader', command: sh('sleep 3600'), readOnly: true });
  });
  afterAll(async () => {
    await d?.[Symbol.asyncDispose]();
  });

  it('gives a write session its own checkout on berth/<name>, where git works and commits reach the project within seconds', async () => {
    const s = await d.client.sessions.start({ project: 'web', agent: 'coder', name: 'feature' });
    // Outside the project's work tree: nothing a merge checks out can reach it.
    expect(s.checkout).toEqual({ dir: join(d.home, 'checkouts', 'web', 'feature'), branch: 'berth/feature', base: 'main' });
    expect(hostGit(repo, 'status', '--porcelain')).toBe('');
    const st = statSync(join(s.checkout!.dir, 'README.md'));
    expect([st.uid, st.gid]).toEqual([TEST_UID, TEST_UID]);

    const r = await inBox(d, s, 'git status --porcelain && git branch --show-current && echo more >> README.md && git add README.md && git commit -qm "agent: more" && git log --format=%s -1');
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toBe('berth/feature\nagent: more\n');
    const tip = await poll(async () => {
      try {
        return hostGit(repo, 'log', '--format=%s', '-1', 'berth/feature') === 'agent: more' ? hostGit(repo, 'rev-parse', 'berth/feature') : null;
      } catch {
        return null;
      }
    }, 10_000, 'commit on the host branch');
    expect(tip).toMatch(/^[0-9a-f]{40}$/);

    await inBox(d, s, 'echo new > new.txt && rm src/app.txt');
    const status = await d.client.sessions.status({ id: s.id });
    expect(status).toMatchObject({ branch: 'berth/feature', base: 'main', ahead: 1, behind: 0, lastCommit: { sha: tip, subject: 'agent: more' } });
    expect(status.dirty.sort((a, b) => a.path.localeCompare(b.path))).toEqual([
      { path: 'new.txt', status: '??' },
      { path: 'src/app.txt', status: 'D' },
    ]);
    const diff = await d.client.sessions.diff({ id: s.id });
    expect(diff.truncated).toBe(false);
    expect(diff.diff).toContain('+more');
    expect(diff.diff).toContain('+new');
    expect(diff.diff).toContain('deleted file mode');
    expect((await d.client.sessions.diff({ id: s.id, stat: true })).diff).toMatch(/3 files changed/);
  });

  it('a read session has no checkout and sees the main checkout read-only', async () => {
    const s = await d.client.sessions.start({ project: 'web', agent: 'reader' });
    expect(s.checkout).toBeNull();
    expect((await inBox(d, s, 'cat README.md; touch x')).stdout).toBe('hello\n');
    expect(await codeOf(d.client.sessions.diff({ id: s.id }))).toBe('NO_CHECKOUT');
    expect((await d.client.sessions.status({ id: s.id })).branch).toBe('main');
    await d.client.sessions.remove({ id: s.id });
  });

  it('refuses to remove a dirty checkout, and with force keeps the changes on refs/berth/wip/<name> and the unmerged branch', async () => {
    const dirty = await d.client.sessions.start({ project: 'web', agent: 'coder', name: 'dirty' });
    await inBox(d, dirty, 'echo unsaved > notes.txt && echo edit >> README.md');
    const err = (await d.client.sessions.remove({ id: dirty.id }).catch((e: unknown) => e)) as BerthError;
    expect(err.code).toBe('DIRTY_CHECKOUT');
    expect(err.details).toMatchObject({ paths: expect.arrayContaining(['notes.txt', 'README.md']) });
    expect((await d.client.sessions.get({ id: dirty.id })).state).toBe('running');

    await inBox(d, dirty, 'git add README.md && git commit -qm "agent: edit"');
    await inBox(d, dirty, 'echo edit2 >> README.md');
    const r = await d.client.sessions.remove({ id: dirty.id, force: true });
    expect(r.kept).toEqual({ wip: 'refs/berth/wip/dirty', branch: 'berth/dirty' });
    expect(r.notes.join('\n')).toMatch(/git checkout -b rescue refs\/berth\/wip\/dirty/);
    expect(existsSync(dirty.checkout!.dir)).toBe(false);
    expect(hostGit(repo, 'show', 'refs/berth/wip/dirty:notes.txt')).toBe('unsaved');
    expect(hostGit(repo, 'show', 'refs/berth/wip/dirty:README.md')).toBe('hello\nedit\nedit2');
    expect(hostGit(repo, 'log', '--format=%s', '-1', 'berth/dirty')).toBe('agent: edit');
    expect(hostGit(repo, 'rev-parse', 'refs/berth/wip/dirty^')).toBe(hostGit(repo, 'rev-parse', 'berth/dirty'));
  });

  it('deletes a merged branch, archives an unmerged one on request', async () => {
    const a = await d.client.sessions.start({ project: 'web', agent: 'coder', name: 'archived' });
    await inBox(d, a, 'echo x > x.txt && git add x.txt && git commit -qm "agent: x"');
    const ra = await d.client.sessions.remove({ id: a.id, deleteBranch: true });
    expect(ra.kept).toEqual({ archive: 'refs/berth/archive/archived' });
    expect(() => hostGit(repo, 'rev-parse', '--verify', '-q', 'refs/heads/berth/archived')).toThrow();
    expect(hostGit(repo, 'log', '--format=%s', '-1', 'refs/berth/archive/archived')).toBe('agent: x');

    const m = await d.client.sessions.start({ project: 'web', agent: 'coder', name: 'nothing' });
    const rm = await d.client.sessions.remove({ id: m.id });
    expect(rm.kept).toEqual({});
  });

  it('merges ff, merge and squash into the base of a clean main checkout, and refuses otherwise without changing anything', async () => {
    const base0 = hostGit(repo, 'rev-parse', 'main');
    const ff = await d.client.sessions.start({ project: 'web', agent: 'coder', name: 'ff' });
    await inBox(d, ff, 'echo ff > ff.txt && git add ff.txt && git commit -qm "agent: ff"');
    // Not on the base branch / dirty main checkout: refused, nothing changes.
    hostGit(repo, 'checkout', '-q', '-b', 'elsewhere');
    expect(await codeOf(d.client.sessions.merge({ id: ff.id, strategy: 'ff' }))).toBe('NOT_ON_BASE_BRANCH');
    hostGit(repo, 'checkout', '-q', 'main');
    await writeFile(join(repo, 'README.md'), 'local edit\n');
    expect(await codeOf(d.client.sessions.merge({ id: ff.id, strategy: 'ff' }))).toBe('MAIN_CHECKOUT_DIRTY');
    hostGit(repo, 'checkout', '-q', '--', 'README.md');
    expect(hostGit(repo, 'rev-parse', 'main')).toBe(base0);

    const r = await d.client.sessions.merge({ id: ff.id, strategy: 'ff' });
    expect(r).toMatchObject({ strategy: 'ff', base: 'main', branch: 'berth/ff' });
    expect(hostGit(repo, 'rev-parse', 'main')).toBe(r.commit);
    expect(await readFile(join(repo, 'ff.txt'), 'utf8')).toBe('ff\n');
    expect((await d.client.sessions.remove({ id: ff.id })).notes.join()).toMatch(/fully merged/);

    // Two sessions edit the same line: the second merge conflicts and leaves main as it was.
    const one = await d.client.sessions.start({ project: 'web', agent: 'coder', name: 'one' });
    const two = await d.client.sessions.start({ project: 'web', agent: 'coder', name: 'two' });
    await inBox(d, one, "sed -i 's/line 2/line two (one)/' src/app.txt && git commit -qam 'one'");
    await inBox(d, two, "sed -i 's/line 2/line 2 (two)/' src/app.txt && git commit -qam 'two'");
    const merged = await d.client.sessions.merge({ id: one.id, strategy: 'merge', message: 'Merge one' });
    expect(hostGit(repo, 'log', '--format=%s', '-1', 'main')).toBe('Merge one');
    const before = hostGit(repo, 'rev-parse', 'main');
    expect(await codeOf(d.client.sessions.merge({ id: two.id, strategy: 'ff' }))).toBe('MERGE_NOT_FAST_FORWARD');
    expect(hostGit(repo, 'rev-parse', 'main')).toBe(before);
    const conflict = (await d.client.sessions.merge({ id: two.id }).catch((e: unknown) => e)) as BerthError;
    expect(conflict.code).toBe('MERGE_CONFLICT');
    expect(conflict.details).toMatchObject({ paths: ['src/app.txt'] });
    expect(hostGit(repo, 'rev-parse', 'main')).toBe(before);
    expect(hostGit(repo, 'status', '--porcelain')).toBe('');
    expect(existsSync(join(repo, '.git', 'MERGE_HEAD'))).toBe(false);
    expect(merged.commit).toBe(before);

    // Squash: one new commit on main with the session's changes.
    const sq = await d.client.sessions.start({ project: 'web', agent: 'coder', name: 'sq' });
    await inBox(d, sq, 'echo a > a.txt && git add a.txt && git commit -qm a && echo b > b.txt && git add b.txt && git commit -qm b');
    const s2 = await d.client.sessions.merge({ id: sq.id, strategy: 'squash', message: 'Squashed sq' });
    expect(hostGit(repo, 'log', '--format=%s', '-1', 'main')).toBe('Squashed sq');
    expect(hostGit(repo, 'rev-list', '--count', `${before}..main`)).toBe('1');
    expect(s2.commit).toBe(hostGit(repo, 'rev-parse', 'main'));
    // berth remembers the squash: removal takes the unmoved branch as merged, and keeps its commits.
    const tip = hostGit(repo, 'rev-parse', 'berth/sq');
    expect((await d.client.sessions.get({ id: sq.id })).merged).toMatchObject({ strategy: 'squash', base: 'main', commit: s2.commit, branchTip: tip });
    const gone = await d.client.sessions.remove({ id: sq.id });
    expect(gone.notes.join('\n')).toMatch(/squash-merged into main/);
    expect(gone.kept).toEqual({ archive: 'refs/berth/archive/sq' });
    expect(() => hostGit(repo, 'rev-parse', '--verify', '-q', 'refs/heads/berth/sq')).toThrow();
    expect(hostGit(repo, 'rev-parse', 'refs/berth/archive/sq')).toBe(tip);
    // A squash whose branch moved on after the merge is not taken as merged.
    const sq2 = await d.client.sessions.start({ project: 'web', agent: 'coder', name: 'sq2' });
    await inBox(d, sq2, 'echo c > c.txt && git add c.txt && git commit -qm c && echo wip > e.txt');
    hostGit(repo, 'config', 'user.name', 'Ada Lovelace');
    hostGit(repo, 'config', 'user.email', 'ada@example.com');
    // What berth diff shows but was never committed is not merged, and the merge says so.
    const m2 = await d.client.sessions.merge({ id: sq2.id, strategy: 'squash' });
    expect(m2.leftOut).toEqual(['e.txt']);
    expect(existsSync(join(repo, 'e.txt'))).toBe(false);
    // Without -m: the session's commit subjects; signed as the project's owner, as git would.
    expect(hostGit(repo, 'log', '-1', '--format=%B', 'main').trim()).toBe('Squashed session branch berth/sq2\n\n* c');
    expect(hostGit(repo, 'log', '-1', '--format=%an <%ae>|%cn <%ce>', 'main')).toBe('Ada Lovelace <ada@example.com>|Ada Lovelace <ada@example.com>');
    await inBox(d, sq2, 'echo d > d.txt && git add d.txt && git commit -qm d');
    await poll(async () => hostGit(repo, 'log', '--format=%s', '-1', 'berth/sq2') === 'd', 20_000, 'the new commit on the host');
    await d.client.sessions.stop({ id: sq2.id });
    expect(await codeOf(d.client.sessions.remove({ id: sq2.id }))).toBe('DIRTY_CHECKOUT');
    const kept = await d.client.sessions.remove({ id: sq2.id, force: true });
    expect(kept.kept).toEqual({ branch: 'berth/sq2', wip: 'refs/berth/wip/sq2' });
    for (const s of [one, two]) await d.client.sessions.remove({ id: s.id, force: true });
  });

  it('merge --include-uncommitted commits the session\'s loose files inside it first; rm of a running session needs stop; the container is named after the session; the project\'s checkouts directory goes with its last checkout', async () => {
    const repo2 = await makeRepo(join(d.home, 'projects', 'loose'));
    await d.client.projects.add({ name: 'loose', path: repo2 });
    const s = await d.client.sessions.start({ project: 'loose', agent: 'coder', name: 'look' });
    expect(s.containerName).toMatch(/^berth-look(-i[0-9a-f]{6}(-[0-9a-f]{4})?)?$/);
    await inBox(d, s, 'echo one > one.txt && git add one.txt && git commit -qm one && echo loose > loose.txt && echo more >> one.txt');
    const m = await d.client.sessions.merge({ id: s.id, strategy: 'squash', message: 'with loose files', includeUncommitted: true });
    expect(m.leftOut).toEqual([]);
    expect(m.committedUncommitted).toMatch(/^[0-9a-f]{40}$/);
    expect(m.branchTip).toBe(m.committedUncommitted);
    expect(hostGit(repo2, 'show', 'main:loose.txt')).toBe('loose');
    expect(hostGit(repo2, 'show', 'main:one.txt')).toBe('one\nmore');
    // Inside the session the work is now committed (the agent's own checkout, its own branch).
    expect((await inBox(d, s, 'git status --porcelain; git log -1 --format=%s')).stdout).toMatch(/^berth: uncommitted work of session look/);
    // Nothing uncommitted: nothing is made.
    const again = await d.client.sessions.merge({ id: s.id, strategy: 'merge', includeUncommitted: true });
    expect(again.committedUncommitted).toBeNull();

    expect(await codeOf(d.client.sessions.remove({ id: s.id, stop: false }))).toBe('SESSION_RUNNING');
    expect((await d.client.sessions.get({ id: s.id })).state).toBe('running');
    // Stopped: committing needs the container, and says how to get it back.
    await inBox(d, s, 'echo late > late.txt');
    await d.client.sessions.stop({ id: s.id, timeoutSec: 1 });
    const notRunning = (await d.client.sessions.merge({ id: s.id, includeUncommitted: true }).catch((e: unknown) => e)) as BerthError;
    expect(notRunning.code).toBe('SESSION_NOT_RUNNING');
    expect(notRunning.hint).toContain('berth restart look');
    const gone = await d.client.sessions.remove({ id: s.id, stop: false, force: true });
    expect(gone.kept.wip).toBe('refs/berth/wip/look');
    expect(existsSync(join(d.home, 'checkouts', 'loose'))).toBe(false);
    expect(existsSync(join(d.home, 'checkouts'))).toBe(true);
    await d.client.projects.remove({ name: 'loose' });
  });

  it('20 write sessions started at once on one repo: 20 checkouts, 20 branches, 0 failures', async () => {
    const started = await Promise.all(Array.from({ length: 20 }, () => d.client.sessions.start({ project: 'web', agent: 'coder' })));
    expect(started.every((s) => s.state === 'running' && s.checkout)).toBe(true);
    expect(new Set(started.map((s) => s.checkout!.dir)).size).toBe(20);
    await Promise.all(started.map((s) => inBox(d, s, `echo ${s.name} > mine.txt && git add mine.txt && git commit -qm ${s.name}`)));
    await poll(async () => started.every((s) => {
      try {
        return hostGit(repo, 'log', '--format=%s', '-1', s.checkout!.branch) === s.name;
      } catch {
        return false;
      }
    }), 20_000, '20 branches on the host');
    expect(hostGit(repo, 'fsck', '--no-progress', '--no-dangling', '--connectivity-only')).toBe('');
    await Promise.all(started.map((s) => d.client.sessions.remove({ id: s.id, deleteBranch: true })));
  });

  it('when-shared: the only active write session uses the main checkout, the next gets its own', async () => {
    await d.client.projects.update({ name: 'web', worktrees: 'when-shared' });
    try {
      const first = await d.client.sessions.start({ project: 'web', agent: 'coder' });
      const second = await d.client.sessions.start({ project: 'web', agent: 'coder' });
      expect(first.checkout).toBeNull();
      expect(second.checkout).not.toBeNull();
      expect((await inBox(d, first, 'git branch --show-current')).stdout).toBe('main\n');
      await d.client.sessions.remove({ id: first.id });
      await d.client.sessions.remove({ id: second.id });
    } finally {
      await d.client.projects.update({ name: 'web', worktrees: 'always' });
    }
  });
});

describe('checkout repairs at startup', () => {
  it('keeps checkouts no record owns (importing their commits), removes stale index.lock files, logging each', async () => {
    const { d, repo } = await startWithProject();
    commitFiles(repo, { 'a.txt': 'a\n' }, 'a');
    await d.client.agents.define({ name: 'coder', command: sh('sleep 3600') });
    const clean = await d.client.sessions.start({ project: 'web', agent: 'coder', name: 'clean' });
    const dirty = await d.client.sessions.start({ project: 'web', agent: 'coder', name: 'dirty' });
    await inBox(d, clean, 'echo c > c.txt && git add c.txt && git commit -qm "clean work"');
    await inBox(d, dirty, 'echo wip > wip.txt');
    await d.stop('SIGKILL');
    // The sessions vanish from the database behind berth's back (say, a restore of an old backup).
    const Database = (await import('better-sqlite3')).default;
    const db = new Database(join(d.home, 'berth.db'));
    db.prepare('DELETE FROM sessions').run();
    db.close();
    await writeFile(join(repo, '.git', 'index.lock'), '');
    const old = new Date(Date.now() - 3600_000);
    await utimes(join(repo, '.git', 'index.lock'), old, old);

    await using d2 = await startDaemon({ home: d.home, ownsHome: true, env: { BERTH_ORPHAN_GRACE_SEC: '0', BERTH_RESYNC_SEC: '1' } });
    await d2.waitForLog(/removed stale .*index\.lock/, 20_000);
    // berth removes only directories its records say it made: these it reports, and keeps.
    await d2.waitForLog(/checkout .*clean belongs to no session berth knows/, 20_000);
    await d2.waitForLog(/checkout .*dirty belongs to no session berth knows/, 20_000);
    expect(existsSync(clean.checkout!.dir)).toBe(true);
    expect(existsSync(join(dirty.checkout!.dir, 'wip.txt'))).toBe(true);
    expect(existsSync(join(repo, '.git', 'index.lock'))).toBe(false);
    // The orphan's commits were imported all the same.
    expect(hostGit(repo, 'log', '--format=%s', '-1', 'berth/clean')).toBe('clean work');
  });
});
