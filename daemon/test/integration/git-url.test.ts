import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chown, mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { BerthError } from '@berth/client-sdk';
import { describe, expect, it } from 'vitest';
import { commitFiles, hostGit } from '../helpers/git.js';
import { TEST_UID, poll, sh, startDaemon, tempDir } from '../helpers/daemon.js';
import { TestSshd } from '../helpers/sshd.js';

/** A bare "remote" with one commit, and a working clone to push more from. */
async function remote(dir: string): Promise<{ bare: string; work: string }> {
  const bare = join(dir, 'remote.git');
  const work = join(dir, 'work');
  execFileSync('git', ['init', '-q', '--bare', '-b', 'main', bare]);
  execFileSync('git', ['init', '-q', '-b', 'main', work]);
  commitFiles(work, { 'README.md': 'remote\n' }, 'first', 0);
  hostGit(work, 'push', '-q', bare, 'main');
  return { bare, work };
}

describe('projects from a git URL', () => {
  it('clones over file://, fetches before each new session, and runs sessions on it', async () => {
    const dir = await tempDir('bt-remote-');
    try {
      const { bare, work } = await remote(dir);
      await using d = await startDaemon();
      await chown(join(d.home, 'projects'), TEST_UID, TEST_UID);
      const p = await d.client.projects.add({ name: 'remote', gitUrl: `file://${bare}` });
      expect(p).toMatchObject({ path: join(d.home, 'repos', 'remote'), gitUrl: `file://${bare}` });
      expect(hostGit(p.path, 'log', '--format=%s', '-1')).toBe('first');
      await d.client.agents.define({ name: 'coder', command: sh('sleep 3600') });
      const one = await d.client.sessions.start({ project: 'remote', agent: 'coder' });
      expect((await d.client.sessions.exec({ id: one.id, cmd: ['cat', 'README.md'] })).stdout).toBe('remote\n');

      // Upstream moves on; the next session starts from it.
      commitFiles(work, { 'NEWS.md': 'news\n' }, 'second', 0);
      hostGit(work, 'push', '-q', bare, 'main');
      const two = await d.client.sessions.start({ project: 'remote', agent: 'coder' });
      expect((await d.client.sessions.exec({ id: two.id, cmd: ['cat', 'NEWS.md'] })).stdout).toBe('news\n');

      // Removing the project keeps the clone; adding the same URL again adopts it.
      await d.client.sessions.remove({ id: one.id });
      await d.client.sessions.remove({ id: two.id });
      await d.client.projects.remove({ name: 'remote' });
      expect(existsSync(join(d.home, 'repos', 'remote', '.git'))).toBe(true);
      expect((await d.client.projects.add({ name: 'remote', gitUrl: `file://${bare}` })).path).toBe(join(d.home, 'repos', 'remote'));

      const bad = (await d.client.projects.add({ name: 'nope', gitUrl: `file://${dir}/missing.git` }).catch((e: unknown) => e)) as BerthError;
      expect(bad.code).toBe('GIT_CLONE_FAILED');
      expect(existsSync(join(d.home, 'repos', 'nope'))).toBe(false);
      expect(((await d.client.projects.add({ name: 'x', gitUrl: 'ext::sh -c touch% /tmp/pwned' }).catch((e: unknown) => e)) as BerthError).code).toBe('INVALID_PARAMS');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('clones over ssh from a real sshd with a deploy key (IdentitiesOnly, accept-new known hosts)', async () => {
    const dir = await tempDir('bt-ssh-');
    const sshd = new TestSshd(join(dir, 'sshd'));
    try {
      const { bare, work } = await remote(dir);
      await sshd.start();
      await using d = await startDaemon();
      await chown(join(d.home, 'projects'), TEST_UID, TEST_UID);
      const noKey = (await d.client.projects.add({ name: 'nokey', gitUrl: sshd.url(bare) }).catch((e: unknown) => e)) as BerthError;
      expect(noKey.code).toBe('GIT_CLONE_FAILED');

      const p = await d.client.projects.add({ name: 'viassh', gitUrl: sshd.url(bare), sshKeyPath: sshd.clientKey, branch: 'main' });
      expect(hostGit(p.path, 'log', '--format=%s', '-1')).toBe('first');
      // accept-new wrote the host key to berth's own known_hosts (hashed or not, ssh-keygen finds it).
      expect(execFileSync('ssh-keygen', ['-F', `[127.0.0.1]:${sshd.port}`, '-f', join(d.home, 'known_hosts')], { encoding: 'utf8' })).toMatch(/ssh-ed25519/);

      commitFiles(work, { 'NEWS.md': 'over ssh\n' }, 'second', 0);
      hostGit(work, 'push', '-q', bare, 'main');
      await d.client.agents.define({ name: 'coder', command: sh('sleep 3600') });
      const s = await d.client.sessions.start({ project: 'viassh', agent: 'coder' });
      expect((await d.client.sessions.exec({ id: s.id, cmd: ['cat', 'NEWS.md'] })).stdout).toBe('over ssh\n');
      await d.client.sessions.exec({ id: s.id, cmd: sh('echo w > w.txt && git add w.txt && git commit -qm work') });
      await poll(async () => {
        try {
          return hostGit(p.path, 'log', '--format=%s', '-1', s.checkout!.branch) === 'work';
        } catch {
          return false;
        }
      }, 10_000, 'session commit in the clone');
      await mkdir(join(dir, 'unused'), { recursive: true });
    } finally {
      sshd.stop();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
