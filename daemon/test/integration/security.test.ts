import { existsSync, readdirSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { BerthError } from '@berth/client-sdk';
import { describe, expect, it } from 'vitest';
import { commitFiles, hostGit } from '../helpers/git.js';
import { sh, startWithProject, tempDir } from '../helpers/daemon.js';

/**
 * The agent is untrusted. An adversarial scripted agent plants every known way to make host-side git
 * run code or read outside its checkout; then berthd runs status, diff, merge and remove on its
 * session. Marker files prove nothing ran; a secret outside the checkout proves nothing leaked.
 */
describe('threat model: an adversarial agent', () => {
  it('cannot make berthd run code, read outside its checkout, or move other branches', async () => {
    const { d, repo } = await startWithProject();
    await using _ = d;
    const outside = await tempDir('bt-evil-');
    const markers = join(outside, 'markers');
    await mkdir(markers);
    const secret = join(outside, 'secret.txt');
    await writeFile(secret, 'TOPSECRET-7f3a\n');
    try {
      commitFiles(repo, { 'app.txt': 'app\n' }, 'base');
      const main0 = hostGit(repo, 'rev-parse', 'main');
      await d.client.agents.define({ name: 'evil', command: sh('sleep 3600'), env: { M: `${markers}/m`, SECRET: secret, REPO: repo } });
      const s = await d.client.sessions.start({ project: 'web', agent: 'evil', name: 'evil' });

      const attack = [
        'set -u',
        // symlinks at host paths, and attributes naming drivers, committed while git is still sane
        'ln -s /etc/passwd passwd-link && ln -s "$SECRET" secret-link && ln -s / root-link',
        'printf "* filter=evil diff=evil\\n" > .gitattributes',
        'git add -A && git commit -qm "innocent looking change"',
        // hooks, in the clone's .git and in a hooksPath of its own
        'for h in pre-commit post-commit post-checkout post-merge pre-push post-rewrite reference-transaction fsmonitor-watchman pre-auto-gc; do printf "#!/bin/sh\\ntouch $M.hook-$h\\n" > .git/hooks/$h; chmod +x .git/hooks/$h; done',
        'mkdir -p evilhooks && cp .git/hooks/* evilhooks/ && git config core.hooksPath /workspace/evilhooks',
        // config that runs commands
        'git config core.fsmonitor "touch $M.fsmonitor"',
        'git config filter.evil.clean "touch $M.filter-clean; cat"',
        'git config filter.evil.smudge "touch $M.filter-smudge; cat"',
        'git config filter.evil.process "touch $M.filter-process"',
        'git config diff.external "touch $M.diff-external"',
        'git config diff.evil.textconv "touch $M.textconv; cat"',
        'git config core.sshCommand "touch $M.ssh"',
        'git config core.pager "touch $M.pager"',
        'git config core.editor "touch $M.editor"',
        'git config alias.status "!touch $M.alias"',
        'git config uploadpack.packObjectsHook "touch $M.packobjects"',
        'mkdir -p .git/info && printf "* filter=evil diff=evil\\n" > .git/info/attributes',
        // try to move the base branch and others: only the clone's own refs can move
        'git branch -f main HEAD; git update-ref refs/heads/other HEAD',
        '(touch "$REPO/.git/objects/evil" 2>/dev/null && echo WROTE-HOST-OBJECTS) || true',
        '(echo x > "$REPO/.git/refs/heads/main" 2>/dev/null && echo WROTE-HOST-REF) || true',
        // and leave uncommitted changes behind, through a link too
        'echo more >> app.txt && ln -s "$SECRET" uncommitted-link',
      ].join('\n');
      const r = await d.client.sessions.exec({ id: s.id, cmd: sh(attack) });
      expect(r.stdout).not.toMatch(/WROTE-HOST/);

      const status = await d.client.sessions.status({ id: s.id });
      const diff = await d.client.sessions.diff({ id: s.id });
      const stat = await d.client.sessions.diff({ id: s.id, stat: true });
      expect(status.lastCommit?.subject).toBe('innocent looking change');
      expect(diff.diff).toContain('+more');
      expect(diff.diff).toContain(`+${secret}`); // the link's target text, not the file behind it
      for (const out of [JSON.stringify(status), diff.diff, stat.diff]) {
        expect(out).not.toContain('TOPSECRET');
        expect(out).not.toContain('root:x:0:0');
      }
      expect(hostGit(repo, 'rev-parse', 'main')).toBe(main0);
      expect(() => hostGit(repo, 'rev-parse', '--verify', '-q', 'refs/heads/other')).toThrow();
      expect(readdirSync(markers)).toEqual([]);

      // An explicit merge is the only thing that changes the base branch.
      const merged = await d.client.sessions.merge({ id: s.id, strategy: 'merge', message: 'merge evil' });
      expect(hostGit(repo, 'rev-parse', 'main')).toBe(merged.commit);
      expect(hostGit(repo, 'rev-parse', 'main^1')).toBe(main0);
      expect(readdirSync(markers)).toEqual([]);

      const removed = await d.client.sessions.remove({ id: s.id, force: true });
      expect(removed.kept.wip).toBe('refs/berth/wip/evil');
      expect(hostGit(repo, 'cat-file', '-p', 'refs/berth/wip/evil:uncommitted-link')).toBe(secret);
      expect(readdirSync(markers)).toEqual([]);
      expect(existsSync(s.checkout!.dir)).toBe(false);
    } finally {
      await rm(outside, { recursive: true, force: true });
    }
  });

  it('a checkout whose .git was swapped for a pointer to an attacker-made git dir is refused, and kept on removal', async () => {
    const { d, repo } = await startWithProject();
    await using _ = d;
    const outside = await tempDir('bt-evil-');
    const markers = join(outside, 'markers');
    await mkdir(markers);
    try {
      commitFiles(repo, { 'app.txt': 'app\n' }, 'base');
      await d.client.agents.define({ name: 'evil', command: sh('sleep 3600'), env: { M: `${markers}/m` } });
      const s = await d.client.sessions.start({ project: 'web', agent: 'evil', name: 'swap' });
      const attack = [
        'git init -q /workspace/evilgit',
        'git --git-dir=/workspace/evilgit/.git config core.fsmonitor "touch $M.fsmonitor"',
        'printf "#!/bin/sh\\ntouch $M.hook\\n" > /workspace/evilgit/.git/hooks/post-checkout',
        'mv .git .git-real && printf "gitdir: /workspace/evilgit/.git\\n" > .git',
        'printf "../../evilgit/.git\\n" > .git-real/commondir',
      ].join('\n');
      await d.client.sessions.exec({ id: s.id, cmd: sh(attack) });
      const err = (await d.client.sessions.status({ id: s.id }).catch((e: unknown) => e)) as BerthError;
      expect(err.code).toBe('CHECKOUT_FAILED');
      expect((await d.client.sessions.diff({ id: s.id }).catch((e: unknown) => e as BerthError)).code).toBe('CHECKOUT_FAILED');
      const removed = await d.client.sessions.remove({ id: s.id, force: true });
      expect(removed.notes.join('\n')).toMatch(/kept/);
      expect(existsSync(join(s.checkout!.dir, '.git-real'))).toBe(true);
      expect(readdirSync(markers)).toEqual([]);
    } finally {
      await rm(outside, { recursive: true, force: true });
    }
  });
});
