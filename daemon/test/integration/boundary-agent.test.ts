import { execFileSync } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, readFileSync, readdirSync, readlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { BerthError } from '@berth/client-sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { commitFiles, hostGit } from '../helpers/git.js';
import { TEST_UID, poll, sh, startDaemon, startWithProject, type DaemonProcess } from '../helpers/daemon.js';
import { addProject, codeOf, FAST_GIT, hasObject, inBox, lastLine, noIndex, note, notes, outsideDir, printNotes, sleep, snapshot, tipOf, uniq } from '../helpers/boundary-agent.js';

/**
 * Attacks from inside the agent's container on what berthd does with the agent's checkout, each
 * named after the threat it covers (this file: threat 1; the helpers are in helpers/boundary-agent.ts):
 *  1. a merge (or a repair) reaching other sessions' checkouts, other projects, or the user's ignored files;
 *  2. host files read through entries of the agent's `.git/index` (or of its commits' trees);
 *  3. the agent's object store (alternates, loose objects, packs, commit-graph) pointing at
 *     /dev/zero, a FIFO or another project's objects; FIFOs berthd's git opens.
 * Marker files prove nothing ran, a secret outside every checkout proves nothing leaked, snapshots
 * (paths, types, contents) prove nothing was lost. Deadlines only guard against hangs; "not
 * blocked" is asserted as an order (the other call answers while the stuck one is still out).
 */

afterAll(printNotes);

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

