import type { Session } from '@berth/client-sdk';
import { describe, expect, it } from 'vitest';
import { commitFiles, hostGit } from '../helpers/git.js';
import { poll, sh, startDaemon, startWithProject, type DaemonProcess } from '../helpers/daemon.js';

const inBox = (d: DaemonProcess, s: Session, script: string) => d.client.sessions.exec({ id: s.id, cmd: sh(script) });
const tipOnHost = (repo: string, branch: string) => {
  try {
    return hostGit(repo, 'rev-parse', '-q', '--verify', `refs/heads/${branch}`);
  } catch {
    return null;
  }
};

/**
 * Every agent commit reaches the project: the watches are a fast path only; what they miss is caught
 * by the backstop that compares branch tips, and by the import every checkout gets at startup.
 */
describe('imports: no commit is left behind', () => {
  it('commits made right before berthd is killed -9 reach the project after the restart', async () => {
    const { d, repo } = await startWithProject();
    let d2: DaemonProcess | null = null;
    try {
      commitFiles(repo, { 'a.txt': 'a\n' }, 'base');
      await d.client.agents.define({ name: 'coder', command: sh('sleep 3600') });
      const started = await Promise.all(Array.from({ length: 5 }, (_, i) => d.client.sessions.start({ project: 'web', agent: 'coder', name: `k${i}` })));
      const results = await Promise.all(started.map((s) => inBox(d, s, `echo ${s.name} > mine.txt && git add mine.txt && git commit -qm ${s.name} && git rev-parse HEAD`)));
      await d.stop('SIGKILL');
      const tips = results.map((r) => r.stdout.trim());
      d2 = await startDaemon({ home: d.home });
      await poll(async () => started.every((s, i) => tipOnHost(repo, s.checkout!.branch) === tips[i]), 30_000, 'all five commits on the host');
      for (const s of started) await d2.client.sessions.remove({ id: s.id, deleteBranch: true });
    } finally {
      await d2?.[Symbol.asyncDispose]();
      await d[Symbol.asyncDispose]();
    }
  });

  it('a commit the watches cannot see (the checkout .git replaced under them) is imported by the backstop', async () => {
    const { d, repo } = await startWithProject();
    await using _ = d;
    commitFiles(repo, { 'a.txt': 'a\n' }, 'base');
    await d.client.agents.define({ name: 'coder', command: sh('sleep 3600') });
    const s = await d.client.sessions.start({ project: 'web', agent: 'coder', name: 'starved' });
    // The watched directories are now unlinked copies: no event reaches berthd for what follows.
    const r = await inBox(d, s, 'cp -a .git .git-new && rm -rf .git && mv .git-new .git && echo x > x.txt && git add x.txt && git commit -qm starved && git pack-refs --all && git rev-parse HEAD');
    expect(r.exitCode, r.stderr).toBe(0);
    const tip = r.stdout.trim();
    await poll(async () => tipOnHost(repo, 'berth/starved') === tip, 20_000, 'the starved commit on the host');
    const st = await d.client.sessions.status({ id: s.id });
    expect(st.importedTip).toBe(tip);
    expect(st.pendingImport).toBe(false);
    await d.client.sessions.remove({ id: s.id, deleteBranch: true });
  });

  it('status says whether the tip is imported, and each import is announced as session.imported', async () => {
    const { d, repo } = await startWithProject();
    await using _ = d;
    const base = commitFiles(repo, { 'a.txt': 'a\n' }, 'base');
    await d.client.agents.define({ name: 'coder', command: sh('sleep 3600') });
    const s = await d.client.sessions.start({ project: 'web', agent: 'coder', name: 'announce' });
    // The branch is there from the start, at the base.
    expect(tipOnHost(repo, 'berth/announce')).toBe(base);
    const before = await d.client.sessions.status({ id: s.id });
    expect(before.importedTip).toBe(base);
    expect(before.pendingImport).toBe(false);

    const ac = new AbortController();
    const seen: string[] = [];
    const reader = (async () => {
      try {
        for await (const e of d.client.events({ signal: ac.signal })) {
          if (e.type === 'session.imported' && e.data.id === s.id) seen.push(e.data.tip);
        }
      } catch {
        // aborted
      }
    })();
    const r = await inBox(d, s, 'echo b > b.txt && git add b.txt && git commit -qm b && git rev-parse HEAD');
    const tip = r.stdout.trim();
    await poll(async () => seen.includes(tip), 20_000, 'a session.imported event for the commit');
    ac.abort();
    await reader;
    expect(tipOnHost(repo, 'berth/announce')).toBe(tip);
    const after = await d.client.sessions.status({ id: s.id });
    expect(after).toMatchObject({ importedTip: tip, pendingImport: false, ahead: 1 });
    await d.client.sessions.remove({ id: s.id, deleteBranch: true });
  });

  it('concurrent status, diff and imports of one session share its shadow safely', async () => {
    const { d, repo } = await startWithProject();
    await using _ = d;
    commitFiles(repo, { 'a.txt': 'a\n' }, 'base');
    await d.client.agents.define({ name: 'coder', command: sh('sleep 3600') });
    const s = await d.client.sessions.start({ project: 'web', agent: 'coder', name: 'busy' });
    const r = await inBox(d, s, 'for i in 1 2 3 4 5; do echo $i > f$i.txt; git add f$i.txt; git commit -qm c$i; done; echo new > untracked.txt; git rev-parse HEAD');
    const tip = r.stdout.trim();
    const calls = await Promise.all([
      ...Array.from({ length: 6 }, () => d.client.sessions.status({ id: s.id })),
      ...Array.from({ length: 6 }, () => d.client.sessions.diff({ id: s.id })),
    ]);
    for (const c of calls.slice(0, 6)) expect(c).toMatchObject({ ahead: 5, lastCommit: { sha: tip }, dirty: [{ path: 'untracked.txt', status: '??' }] });
    for (const c of calls.slice(6)) expect((c as { diff: string }).diff).toContain('+new');
    expect(tipOnHost(repo, 'berth/busy')).toBe(tip);
    await d.client.sessions.remove({ id: s.id, force: true, deleteBranch: true });
  });
});
