import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BerthError } from '@berth/client-sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { commitFiles, hostGit } from '../helpers/git.js';
import { TEST_UID, makeRepo, poll, sh, startWithProject, tempDir, type DaemonProcess } from '../helpers/daemon.js';
import { codeOf, FAST_GIT, inBox, mountsInto, note, ownerGit, printMeasured, uniq } from '../helpers/boundary-host.js';

/**
 * Attacks on the host's resources and paths, each named after the threat it covers (this file: threats 6 and 9; the helpers are in helpers/boundary-host.ts):
 *  4. memory and disk from agent-sized inputs (sparse and huge files, endless files, FIFOs);
 *  5. inotify exhaustion through files and directories made inside a checkout's `.git`;
 *  6. the project owner's repository configuration and files making berthd (root) run or read;
 *  9. the project path swapped for a link after `projects.add`.
 * Resources are measured (RSS from /proc, disk with du, inotify watches from fdinfo), never time:
 * deadlines below only guard against hangs.
 */

afterAll(printMeasured);

// ---------------------------------------------------------------------------------------------------
// Threat 6: the project owner's configuration (and files) run or read things as berthd.
// ---------------------------------------------------------------------------------------------------

describe('threat 6 (owner config runs code as berthd)', () => {
  const P = `bh6-${uniq}`;
  let d: DaemonProcess;
  let repo: string;
  let outside: string;
  let markers: string;
  let bin: string;

  beforeAll(async () => {
    ({ d, repo } = await startWithProject({ env: FAST_GIT }, P));
    outside = await tempDir('bt-own-');
    chmodSync(outside, 0o755);
    markers = join(outside, 'markers');
    bin = join(outside, 'bin');
    mkdirSync(markers, { mode: 0o1777 });
    chmodSync(markers, 0o1777);
    mkdirSync(join(bin, 'hooks'), { recursive: true, mode: 0o755 });
    await d.client.agents.define({ name: 'coder', command: sh('sleep 3600') });
  });
  afterAll(async () => {
    await d?.[Symbol.asyncDispose]();
    rmSync(outside, { recursive: true, force: true });
  });

  /** An executable that records which uid ran it (one file per run, so root and 1000 never share one). */
  const marker = (name: string, tail = 'exit 0', dir = bin) => {
    const p = join(dir, name);
    writeFileSync(p, `#!/bin/sh\nid -u > ${markers}/${name.replace(/\//g, '_')}.$$\n${tail}\n`, { mode: 0o755 });
    chmodSync(p, 0o755);
    return p;
  };

  /** Markers left by the test's own git run as the owner (not berth's doing; uid 1000 all the same). */
  const ownRuns = new Set<string>();
  const ranAs = () =>
    readdirSync(markers).map((f) => ({ f, uid: readFileSync(join(markers, f), 'utf8').trim() }));
  const summary = (runs: { f: string; uid: string }[]) =>
    [...new Set(runs.filter((r) => !ownRuns.has(r.f)).map((r) => `${r.f.replace(/\.\d+$/, '')}=${r.uid}`))].sort().join(', ') || 'none';

  /** Every command-running key git knows of, pointed at marker scripts. */
  function evilConfig(prefix: string): string[] {
    const hooks = join(bin, 'hooks');
    for (const h of [
      'pre-commit', 'prepare-commit-msg', 'commit-msg', 'post-commit', 'pre-merge-commit', 'post-merge', 'post-checkout',
      'reference-transaction', 'post-index-change', 'pre-auto-gc', 'post-rewrite', 'pre-push', 'fsmonitor-watchman', 'push-to-checkout',
    ]) {
      marker(h, 'exit 0', hooks);
    }
    return [
      `core.hooksPath=${hooks}`,
      `core.fsmonitor=${marker(`${prefix}fsmonitor`, 'exit 1')}`,
      `core.alternateRefsCommand=${marker(`${prefix}alternateRefsCommand`)}`,
      'core.alternateRefsPrefixes=refs/heads/',
      `core.sshCommand=${marker(`${prefix}sshCommand`, 'exit 1')}`,
      `core.pager=${marker(`${prefix}pager`, 'cat')}`,
      `core.editor=${marker(`${prefix}editor`)}`,
      `sequence.editor=${marker(`${prefix}sequence-editor`)}`,
      `core.askPass=${marker(`${prefix}askpass`)}`,
      `credential.helper=!${marker(`${prefix}credential`)}`,
      `filter.x.clean=${marker(`${prefix}filter-clean`, 'cat')}`,
      `filter.x.smudge=${marker(`${prefix}filter-smudge`, 'cat')}`,
      // A long-running filter that completes the handshake and offers no capability (a failing one would break the owner's own merges).
      `filter.y.process=${marker(`${prefix}filter-process`, "printf '0016git-filter-server\\n000eversion=2\\n00000000'\nexec cat >/dev/null")}`,
      `merge.x.driver=${marker(`${prefix}merge-driver`)} %O %A %B`,
      `diff.external=${marker(`${prefix}diff-external`)}`,
      `diff.x.textconv=${marker(`${prefix}textconv`, 'cat "$1"')}`,
      `uploadpack.packObjectsHook=${marker(`${prefix}packObjectsHook`)}`,
      `gc.auto=1`,
      `maintenance.auto=true`,
      `alias.merge=!${marker(`${prefix}alias`)}`,
    ];
  }

  /** Writes `keys` into `file` as git config (as root), then gives the whole repo back to its owner. */
  function writeConfig(file: string, keys: string[]): void {
    for (const kv of keys) {
      const i = kv.indexOf('=');
      execFileSync('git', ['config', '--file', file, '--add', kv.slice(0, i), kv.slice(i + 1)]);
    }
  }

  /** Sessions started, committed in, inspected, merged by all three strategies and force-removed. */
  async function driveEverything(project: string, projectRepo: string, tag: string): Promise<void> {
    const ff = await d.client.sessions.start({ project, agent: 'coder', name: `${tag}-ff` });
    const mg = await d.client.sessions.start({ project, agent: 'coder', name: `${tag}-merge` });
    const sq = await d.client.sessions.start({ project, agent: 'coder', name: `${tag}-squash` });
    await inBox(d, ff, 'echo ff > ff.x && echo p > ff.p && git add -A && git commit -qm "agent: ff"');
    await inBox(d, mg, "sed -i 's/^two$/two (session)/' shared.x && echo m > m.p && git add -A && git commit -qm 'agent: merge'");
    await inBox(d, sq, 'echo s > s.x && git add -A && git commit -qm "agent: squash 1" && echo t > t.x && git add -A && git commit -qm "agent: squash 2"');
    for (const s of [ff, mg, sq]) {
      await poll(async () => {
        try {
          return ownerGit(projectRepo, 'rev-parse', `berth/${s.name}`) !== ownerGit(projectRepo, 'rev-parse', 'main');
        } catch {
          return false;
        }
      }, 60_000, `auto-import of ${s.name}`);
      await d.client.sessions.status({ id: s.id });
      await d.client.sessions.diff({ id: s.id });
      await d.client.sessions.diff({ id: s.id, stat: true });
    }
    await d.client.sessions.merge({ id: ff.id, strategy: 'ff' });
    // The owner moves main too, so the next merge is a real three-way one (merge driver, filters).
    writeFileSync(join(projectRepo, 'shared.x'), 'one (owner)\ntwo\nthree\n');
    execFileSync('chown', [`${TEST_UID}:${TEST_UID}`, join(projectRepo, 'shared.x')]);
    const beforeOwn = new Set(readdirSync(markers));
    ownerGit(projectRepo, '-c', 'core.hooksPath=/dev/null', '-c', 'core.fsmonitor=false', 'commit', '-qam', 'owner: shared');
    for (const f of readdirSync(markers)) if (!beforeOwn.has(f)) ownRuns.add(f);
    expect(await codeOf(d.client.sessions.merge({ id: mg.id, strategy: 'merge', message: 'merge it' }))).toMatch(/^(ok|MERGE_CONFLICT)$/);
    expect(await codeOf(d.client.sessions.merge({ id: sq.id, strategy: 'squash', message: 'squash it' }))).toMatch(/^(ok|MERGE_CONFLICT)$/);
    for (const s of [ff, mg, sq]) {
      await inBox(d, s, 'echo dirty >> shared.x && echo new > untracked.x').catch(() => {});
      await d.client.sessions.remove({ id: s.id, force: true });
    }
  }

  async function addProject(name: string): Promise<string> {
    const r = await makeRepo(join(d.home, 'projects', name));
    commitFiles(r, { '.gitattributes': '*.x filter=x diff=x merge=x\n*.p filter=y\n', 'shared.x': 'one\ntwo\nthree\n', 'base.p': 'p\n' }, 'base with attributes');
    return r;
  }

  it('threat 6 (owner config runs code as berthd): filters, merge driver, fsmonitor, hooksPath, alternateRefsCommand, packObjectsHook, sshCommand, diff.external ... in the project\'s .git/config run, if at all, as the owner (uid 1000), never as root', async () => {
    commitFiles(repo, { '.gitattributes': '*.x filter=x diff=x merge=x\n*.p filter=y\n', 'shared.x': 'one\ntwo\nthree\n', 'base.p': 'p\n' }, 'base with attributes');
    // An alternates file so alternate-refs commands have something to trigger on: berth refuses a
    // store that borrows from another outright (nothing of the owner's runs for that), so it is
    // removed again before the sessions that drive every other key.
    const other = await makeRepo(join(outside, 'other'));
    writeFileSync(join(repo, '.git', 'objects', 'info', 'alternates'), `${join(other, '.git', 'objects')}\n`);
    writeFileSync(join(repo, '.git', 'info', 'attributes'), '* diff=x\n');
    writeConfig(join(repo, '.git', 'config'), evilConfig(''));
    execFileSync('chown', ['-R', `${TEST_UID}:${TEST_UID}`, repo]);
    expect(await codeOf(d.client.sessions.start({ project: P, agent: 'coder', name: 'cfg-alt' }))).toBe('PROJECT_OBJECTS_LINKED');
    rmSync(join(repo, '.git', 'objects', 'info', 'alternates'));
    await driveEverything(P, repo, 'cfg');
    const runs = ranAs();
    note(`6 owner config: markers left by berth's calls: ${summary(runs)}`);
    expect(runs.filter((r) => r.uid !== String(TEST_UID))).toEqual([]);
  }, 900_000);

  it('threat 6 (owner config runs code as berthd) variant: the same keys through include.path / includeIf from a file the owner names run, if at all, as the owner, never as root', async () => {
    const incName = `inc-${uniq}`;
    const inc = await addProject(incName);
    const file = join(outside, 'evil.inc');
    writeConfig(file, evilConfig('inc-'));
    chmodSync(file, 0o644);
    writeConfig(join(inc, '.git', 'config'), [`include.path=${file}`, `includeIf.gitdir:/.path=${file}`]);
    execFileSync('chown', ['-R', `${TEST_UID}:${TEST_UID}`, inc]);
    await d.client.projects.add({ name: incName, path: inc });
    await driveEverything(incName, inc, 'inc');
    const runs = ranAs();
    note(`6 variant include.path: markers left by berth's calls (both tests): ${summary(runs)}`);
    expect(runs.filter((r) => r.uid !== String(TEST_UID))).toEqual([]);
  }, 900_000);

  it('threat 6 (owner config runs code as berthd) variant: objects/info/alternates naming a root-only repository does not make berthd (root) read it for the owner: no secret in status/diff, none imported into the project', async () => {
    // A repository only root can reach (0700 parent), with a commit whose id the owner learnt.
    const vault = await tempDir('bt-vault-');
    try {
      const secretRepo = await makeRepo(join(vault, 'secret'), { owner: 0 });
      const secretSha = commitFiles(secretRepo, { 'secret.txt': 'ROOT-ONLY-SECRET-5d1c\n' }, 'root only subject 9e2b', 0);
      expect(() => ownerGit(secretRepo, 'cat-file', '-p', `${secretSha}:secret.txt`)).toThrow();
      const altName = `alt-${uniq}`;
      const alt = await addProject(altName);
      await d.client.projects.add({ name: altName, path: alt });
      const s = await d.client.sessions.start({ project: altName, agent: 'coder', name: 'alt' });
      // The owner names the vault as an alternate of their project; the agent (same uid) points its branch at the secret commit.
      writeFileSync(join(alt, '.git', 'objects', 'info', 'alternates'), `${join(secretRepo, '.git', 'objects')}\n`);
      execFileSync('chown', [`${TEST_UID}:${TEST_UID}`, join(alt, '.git', 'objects', 'info', 'alternates')]);
      await inBox(d, s, `echo ${secretSha} > .git/refs/heads/berth/alt`);
      const status = await d.client.sessions.status({ id: s.id }).then((st) => JSON.stringify(st), (e: unknown) => `error ${(e as BerthError).code}`);
      const diff = await d.client.sessions.diff({ id: s.id }).then((x) => x.diff, (e: unknown) => `error ${(e as BerthError).code}`);
      await new Promise((r) => setTimeout(r, 5000)); // a few backstop rounds of auto-import
      let imported = '';
      try {
        // Without the alternate, only what berth copied into the project itself is readable.
        rmSync(join(alt, '.git', 'objects', 'info', 'alternates'));
        imported = ownerGit(alt, 'cat-file', '-p', `${secretSha}:secret.txt`);
      } catch {
        imported = '';
      }
      note(`6 variant root-only alternate: status ${status.slice(0, 400)}; diff ${diff.includes('ROOT-ONLY-SECRET') ? 'SHOWS the secret' : 'does not show the secret'}; project ${imported ? 'RECEIVED the secret objects' : 'has no secret objects'}`);
      expect(status).not.toContain('9e2b');
      expect(status).not.toContain('secret.txt');
      expect(diff).not.toContain('ROOT-ONLY-SECRET');
      expect(imported).not.toContain('ROOT-ONLY-SECRET');
      await d.client.sessions.remove({ id: s.id, force: true }).catch(() => {});
    } finally {
      rmSync(vault, { recursive: true, force: true });
    }
  }, 600_000);
});

// ---------------------------------------------------------------------------------------------------
// Threat 9: TOCTOU on the project path.
// ---------------------------------------------------------------------------------------------------

describe('threat 9 (TOCTOU on the project path)', () => {
  const P = `bh9-${uniq}`;
  let d: DaemonProcess;
  let repo: string;
  let vault: string;
  let outsideRepo: string;

  beforeAll(async () => {
    ({ d, repo } = await startWithProject({ env: FAST_GIT }, P));
    commitFiles(repo, { 'INSIDE.txt': 'inside\n' }, 'inside');
    // The repository outside PROJECTS_ROOT, in a directory only root can enter.
    vault = await tempDir('bt-out-');
    outsideRepo = await makeRepo(join(vault, 'repo'), { owner: 0 });
    commitFiles(outsideRepo, { 'OUTSIDE-SECRET.txt': 'outside secret 44af\n' }, 'outside secret subject 71c0', 0);
    hostGit(outsideRepo, 'gc', '-q');
    await d.client.agents.define({ name: 'coder', command: sh('sleep 3600') });
    await d.client.agents.define({ name: 'reader', command: sh('sleep 3600'), readOnly: true });
  });
  afterAll(async () => {
    await d?.[Symbol.asyncDispose]();
    rmSync(vault, { recursive: true, force: true });
  });

  /** Swaps `path` for a link to `target` for the duration of `fn`, then puts it back. */
  async function swapped<T>(path: string, target: string, fn: () => Promise<T>): Promise<T> {
    const aside = `${path}.aside`;
    renameSync(path, aside);
    symlinkSync(target, path);
    try {
      return await fn();
    } finally {
      rmSync(path, { force: true });
      renameSync(aside, path);
    }
  }

  it('threat 9 (TOCTOU on the project path): the project directory swapped for a link to a repository outside PROJECTS_ROOT: new write and read sessions fail with PROJECT_PATH_CHANGED and nothing mounts the outside path', async () => {
    await swapped(repo, outsideRepo, async () => {
      expect(await codeOf(d.client.sessions.start({ project: P, agent: 'coder', name: 'swap-w' }))).toBe('PROJECT_PATH_CHANGED');
      expect(await codeOf(d.client.sessions.start({ project: P, agent: 'reader', name: 'swap-r' }))).toBe('PROJECT_PATH_CHANGED');
      expect(await codeOf(d.client.sessions.start({ project: P, agent: 'coder', mode: 'read', name: 'swap-r2' }))).toBe('PROJECT_PATH_CHANGED');
    });
    expect(mountsInto(d, vault)).toEqual([]);
    expect(existsSync(join(d.home, 'checkouts', P, 'swap-w'))).toBe(false);
    // Put back, the same project works again.
    const s = await d.client.sessions.start({ project: P, agent: 'coder', name: 'back' });
    expect((await inBox(d, s, 'ls')).stdout).toContain('INSIDE.txt');
    await d.client.sessions.remove({ id: s.id, force: true });
  }, 300_000);

  it('threat 9 (TOCTOU on the project path) variant: .git, .git/objects, or a gitfile in place of .git, leading to the outside repository: sessions fail with PROJECT_PATH_CHANGED, nothing outside is cloned or mounted', async () => {
    const cases: [string, () => Promise<string[]>][] = [
      ['.git -> outside/.git', () => swapped(join(repo, '.git'), join(outsideRepo, '.git'), starts)],
      ['.git/objects -> outside/.git/objects', () => swapped(join(repo, '.git', 'objects'), join(outsideRepo, '.git', 'objects'), starts)],
      [
        '.git as a gitfile naming outside/.git',
        async () => {
          const git = join(repo, '.git');
          renameSync(git, `${git}.aside`);
          writeFileSync(git, `gitdir: ${join(outsideRepo, '.git')}\n`);
          try {
            return await starts();
          } finally {
            rmSync(git, { force: true });
            renameSync(`${git}.aside`, git);
          }
        },
      ],
    ];
    let n = 0;
    async function starts(): Promise<string[]> {
      n++;
      return [
        await codeOf(d.client.sessions.start({ project: P, agent: 'coder', name: `gw-${n}` })),
        await codeOf(d.client.sessions.start({ project: P, agent: 'reader', name: `gr-${n}` })),
      ];
    }
    for (const [what, run] of cases) {
      const codes = await run();
      note(`9 variant ${what}: write/read start -> ${codes.join('/')}`);
      expect(codes, what).toEqual(['PROJECT_PATH_CHANGED', 'PROJECT_PATH_CHANGED']);
    }
    expect(mountsInto(d, vault)).toEqual([]);
    for (let i = 1; i <= n; i++) expect(existsSync(join(d.home, 'checkouts', P, `gw-${i}`))).toBe(false);
  }, 300_000);

  it('threat 9 (TOCTOU on the project path) variant: swapped after the session started, the agent exits and berth restarts its container: the restarted container must not see the outside repository', async () => {
    // Exits with 3 when told to, and is restarted (on-failure) by berth.
    await d.client.agents.define({
      name: 'crasher',
      command: sh('while [ ! -e /tmp/die ]; do sleep 0.2; done; rm -f /tmp/die; exit 3'),
      readOnly: true,
      restartPolicy: 'on-failure',
    });
    await d.client.agents.define({ name: 'wcrasher', command: sh('while [ ! -e /tmp/die ]; do sleep 0.2; done; rm -f /tmp/die; exit 3'), restartPolicy: 'on-failure' });
    const r = await d.client.sessions.start({ project: P, agent: 'crasher', name: 'crash-r' });
    const w = await d.client.sessions.start({ project: P, agent: 'wcrasher', name: 'crash-w' });
    const objects = join(repo, '.git', 'objects');
    expect((await inBox(d, r, 'ls /workspace')).stdout).toContain('INSIDE.txt');
    const seen: Record<string, string> = {};
    try {
      await swapped(repo, outsideRepo, async () => {
        for (const s of [r]) {
          await d.client.sessions.exec({ id: s.id, cmd: sh('touch /tmp/die') });
          await poll(async () => {
            const x = await d.client.sessions.get({ id: s.id });
            return ((x.restartCount >= 1 && x.state === 'running') || x.state === 'failed') && x;
          }, 120_000, `restart of ${s.name}`).catch(() => null);
          const x = await d.client.sessions.get({ id: s.id });
          seen[s.name] = `${x.state}/${x.restartCount}: ${await inBox(d, s, 'ls /workspace').then((o) => o.stdout.trim().replace(/\n/g, ' '), (e: unknown) => `exec failed: ${String(e).slice(0, 80)}`)}`;
        }
        // (docker inspect still names the project path, which during the swap leads outside; what
        // counts is what a (re)started container sees, checked above and below.)
      });
      // The write session's read-only object store mount, swapped for the outside repository's.
      const outsideObjects = readdirSync(join(outsideRepo, '.git', 'objects', 'pack')).filter((f) => f.endsWith('.pack'));
      await swapped(objects, join(outsideRepo, '.git', 'objects'), async () => {
        await d.client.sessions.exec({ id: w.id, cmd: sh('touch /tmp/die') });
        await poll(async () => {
          const x = await d.client.sessions.get({ id: w.id });
          return ((x.restartCount >= 1 && x.state === 'running') || x.state === 'failed') && x;
        }, 120_000, 'restart of crash-w').catch(() => null);
        const x = await d.client.sessions.get({ id: w.id });
        seen['crash-w'] = `${x.state}/${x.restartCount}: ${await inBox(d, w, `ls ${objects}/pack`).then((o) => o.stdout.trim().replace(/\n/g, ' '), (e: unknown) => `exec failed: ${String(e).slice(0, 80)}`)}`;
      });
      note(`9 variant restart after swap: ${JSON.stringify(seen)}; outside packs: ${outsideObjects.join(' ')}`);
      expect(seen['crash-r']).not.toContain('OUTSIDE-SECRET');
      for (const p of outsideObjects) expect(seen['crash-w']).not.toContain(p);
      expect(mountsInto(d, vault)).toEqual([]);
    } finally {
      for (const s of [r, w]) await d.client.sessions.remove({ id: s.id, force: true }).catch(() => {});
    }
  }, 600_000);

  it('threat 9 (TOCTOU on the project path) variant: .git/objects/pack (below the level berth checks) swapped for a link to the outside repository\'s packs: berthd (root) reads nothing of it for status, diff or import', async () => {
    const s = await d.client.sessions.start({ project: P, agent: 'coder', name: 'packlink' });
    const outsideSha = hostGit(outsideRepo, 'rev-parse', 'HEAD');
    const pack = join(repo, '.git', 'objects', 'pack');
    const out: Record<string, string> = {};
    await swapped(pack, join(outsideRepo, '.git', 'objects', 'pack'), async () => {
      await inBox(d, s, `echo ${outsideSha} > .git/refs/heads/berth/packlink`);
      out.status = await d.client.sessions.status({ id: s.id }).then((x) => JSON.stringify(x), (e: unknown) => `error ${(e as BerthError).code}`);
      out.diff = await d.client.sessions.diff({ id: s.id }).then((x) => x.diff, (e: unknown) => `error ${(e as BerthError).code}`);
      await new Promise((r) => setTimeout(r, 5000)); // backstop rounds of auto-import
    });
    let imported = '';
    try {
      imported = ownerGit(repo, 'cat-file', '-p', `${outsideSha}:OUTSIDE-SECRET.txt`);
    } catch {
      imported = '';
    }
    note(`9 variant objects/pack link: status ${out.status?.slice(0, 400)}; diff ${out.diff?.includes('outside secret') ? 'SHOWS outside content' : 'shows nothing outside'}; project ${imported ? 'RECEIVED outside objects' : 'has no outside objects'}`);
    expect(out.status).not.toContain('71c0');
    expect(out.status).not.toContain('OUTSIDE-SECRET');
    expect(out.diff).not.toContain('outside secret');
    expect(imported).not.toContain('outside secret');
    await inBox(d, s, 'git update-ref refs/heads/berth/packlink HEAD@{1} 2>/dev/null || true').catch(() => {});
    await d.client.sessions.remove({ id: s.id, force: true }).catch(() => {});
  }, 300_000);
});
