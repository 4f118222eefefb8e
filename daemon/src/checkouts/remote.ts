import { existsSync } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { BerthError, type Project } from '@berth/client-sdk/protocol';
import { git } from './git.js';
import type { Imports } from './imports.js';
import { chownTree, currentBranch, gitMessage, pgit, shellQuote } from './project-git.js';
import { SHA, hashKey } from './shadow.js';

/** Projects cloned from a URL: the first clone, and each fetch before a session branches off. */
export class Remotes {
  constructor(
    private readonly home: string,
    private readonly imports: Imports,
  ) {}

  sshEnv(project: Pick<Project, 'sshKeyPath'>): Record<string, string> {
    if (!project.sshKeyPath) return { GIT_SSH_COMMAND: `ssh -o BatchMode=yes -o StrictHostKeyChecking=accept-new -o UserKnownHostsFile=${join(this.home, 'known_hosts')}` };
    return {
      GIT_SSH_COMMAND: [
        'ssh',
        `-i ${shellQuote(project.sshKeyPath)}`,
        '-o IdentitiesOnly=yes',
        '-o BatchMode=yes',
        '-o StrictHostKeyChecking=accept-new',
        `-o UserKnownHostsFile=${shellQuote(join(this.home, 'known_hosts'))}`,
      ].join(' '),
    };
  }

  async cloneProject(url: string, dir: string, opts: { branch?: string; sshKeyPath?: string | null; owner?: { uid: number; gid: number } | null }): Promise<void> {
    // Traversable, not listable: git in the clone runs as the project's owner.
    await mkdir(join(dir, '..'), { recursive: true, mode: 0o711 });
    if (existsSync(dir)) throw new BerthError('GIT_CLONE_FAILED', `${dir} already exists; remove it or choose another project name`, { details: { dir } });
    try {
      await git(['clone', '--quiet', ...(opts.branch ? ['--branch', opts.branch] : []), '--', url, dir], {
        cwd: join(dir, '..'),
        env: this.sshEnv({ sshKeyPath: opts.sshKeyPath ?? null }),
        timeoutMs: 600_000,
      });
    } catch (err) {
      await rm(dir, { recursive: true, force: true });
      throw new BerthError('GIT_CLONE_FAILED', `git clone ${url} failed: ${gitMessage(err)}`, { details: { url } });
    }
    if (opts.owner) await chownTree(dir, opts.owner);
  }

  /**
   * Fetches a URL project and fast-forwards its base branch when the main checkout allows it. The
   * network fetch runs as berthd (its deploy key, its known_hosts) into a bare mirror berthd owns,
   * with berth's configuration only; the project (whose config its owner controls) receives the
   * objects through the same owner-run import as session commits. No root git reads the owner's
   * configuration (`remote.*.uploadpack`, `url.*.insteadOf`, `core.*Command` ...).
   */
  async refresh(project: Project): Promise<void> {
    if (!project.gitUrl) return;
    const mirror = join(this.home, 'fetch', `${hashKey(project.path)}.git`);
    if (!existsSync(join(mirror, 'HEAD'))) {
      await mkdir(mirror, { recursive: true, mode: 0o700 });
      await git(['init', '--quiet', '--bare', mirror], { cwd: this.home });
    }
    await git(['fetch', '--quiet', '--prune', '--no-tags', '--', project.gitUrl, '+refs/heads/*:refs/heads/*'], {
      cwd: mirror,
      env: { ...this.sshEnv(project), GIT_DIR: mirror },
      timeoutMs: 300_000,
    });
    const branches = new Map<string, string>();
    for (const line of (await git(['for-each-ref', '--format=%(objectname) %(refname)', 'refs/heads/'], { cwd: mirror, env: { GIT_DIR: mirror } })).split('\n')) {
      const [sha, ref] = line.split(' ');
      if (sha && ref && SHA.test(sha) && /^refs\/heads\/[A-Za-z0-9._/-]+$/.test(ref) && !ref.includes('..')) branches.set(ref.slice('refs/heads/'.length), sha);
    }
    const remote = new Map<string, string>();
    for (const line of (await pgit(project.path, ['for-each-ref', '--format=%(objectname) %(refname)', 'refs/remotes/origin/'])).split('\n')) {
      const [sha, ref] = line.split(' ');
      if (sha && ref) remote.set(ref, sha);
    }
    const updates = [...branches].filter(([b, sha]) => remote.get(`refs/remotes/origin/${b}`) !== sha).map(([b, sha]) => ({ name: `refs/remotes/origin/${b}`, sha }));
    const deletes = [...remote.keys()].filter((r) => r !== 'refs/remotes/origin/HEAD' && !branches.has(r.slice('refs/remotes/origin/'.length)));
    await this.imports.importMany(project.path, [], updates, [join(mirror, 'objects')], deletes, true);
    const current = await currentBranch(project.path);
    const base = project.branch ?? current;
    if (!base || current !== base) return;
    if ((await this.imports.mainDirty(project.path)).length) return;
    await pgit(project.path, ['merge', '--ff-only', '--quiet', '--no-overwrite-ignore', `refs/remotes/origin/${base}`]).catch(() => {});
  }
}
