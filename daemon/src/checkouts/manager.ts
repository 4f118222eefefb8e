import { existsSync, realpathSync } from 'node:fs';
import { chmod, lstat, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { BerthError, type Project } from '@berth/client-sdk/protocol';
import type { Logger } from '../log.js';
import { KeyedMutex } from '../shared/mutex.js';
import { git } from './git.js';
import { Imports } from './imports.js';
import { Inspector } from './inspect.js';
import { currentBranch, gitMessage, isAncestor, pgit, revParse, run } from './project-git.js';
import { Remotes } from './remote.js';
import { Removals, type DirIdentity } from './removal.js';
import { isRealDir } from './safe-fs.js';
import { Shadows } from './shadow.js';

export type { CheckoutRef } from './shadow.js';
export type { DirIdentity } from './removal.js';
export type { ImportItem } from './imports.js';

export interface NewCheckout {
  dir: string;
  branch: string;
  base: string;
  baseSha: string;
  /** Where the branch starts: the base, or the tip of the branch it continues. */
  head: string;
  /** The directory's identity, recorded so a later removal can prove it is the one berth made. */
  identity: DirIdentity;
}

/**
 * Session checkouts, and every git operation berthd does on repositories agents can write.
 *
 * A write session gets its own clone at `$BERTH_HOME/checkouts/<project>/<session>` (`git clone
 * --shared`: objects borrowed from the project through alternates) on branch `berth/<session>`. It
 * lives outside every project's work tree, so nothing a merge checks out can reach it, and berth
 * removes only directories it recorded making (same path under that root, same device and inode,
 * no link at any level). Its container sees that clone and, read-only at the same path, the
 * project's object store, nothing else of the project.
 *
 * The parts: the shadow (shadow.ts: berthd never runs git *as* a repository an agent can write),
 * reading a checkout (inspect.ts), imports and merges (imports.ts), removal and repairs
 * (removal.ts), projects cloned from a URL (remote.ts), git in the project (project-git.ts). Git that runs in the
 * project itself (imports, merges, branch bookkeeping) runs as the project's owner when berthd is
 * root, so whatever the owner's own configuration runs, it runs with the owner's rights, not root's.
 */
export class CheckoutManager {
  private readonly locks = new KeyedMutex();
  readonly shadows: Shadows;
  readonly root: string;
  readonly inspect: Inspector;
  readonly imports: Imports;
  readonly removal: Removals;
  readonly remotes: Remotes;

  constructor(
    private readonly home: string,
    private readonly log: Logger,
  ) {
    this.shadows = new Shadows(home);
    // Checkout paths are compared with their real paths (mount sources are checked on every use).
    this.root = join(existsSync(home) ? realpathSync(home) : home, 'checkouts');
    const withRepo = <T>(repo: string, fn: () => Promise<T>) => this.withRepo(repo, fn);
    this.inspect = new Inspector(this.shadows);
    this.imports = new Imports(home, this.shadows, this.inspect, withRepo, log);
    this.removal = new Removals(home, this.root, this.shadows, this.inspect, this.imports, withRepo, log);
    this.remotes = new Remotes(home, this.imports);
  }

  /** Serialises git writes per repository (parallel `clone`/`fetch`/`update-ref` race on locks). */
  withRepo<T>(repo: string, fn: () => Promise<T>): Promise<T> {
    return this.locks.run(repo, fn);
  }

  /** Where the checkout of session `name` of `project` lives (known before it exists). */
  checkoutDir(project: string, name: string): string {
    return join(this.root, project, name);
  }

  /** The branch the main checkout has checked out. */
  currentBranch(repo: string): Promise<string | null> {
    return currentBranch(repo);
  }

  /**
   * The parent of every checkout of `project`: root-owned directories berth made, which neither agents
   * (they see only their own clone) nor the project's owner can rename or replace with a link.
   */
  private async projectRoot(project: string): Promise<string> {
    await mkdir(this.root, { recursive: true, mode: 0o711 });
    const dir = join(this.root, project);
    await mkdir(dir, { recursive: true, mode: 0o711 });
    if (!(await isRealDir(this.home, join('checkouts', project)))) {
      throw new BerthError('CHECKOUT_FAILED', `${dir} is not a plain directory; berth will not put checkouts there`);
    }
    // Owners reach their checkouts (editors, `cd`) through berth's home, which lists nothing to them.
    await chmod(this.home, 0o711).catch(() => {});
    return dir;
  }

  /**
   * Makes the checkout of session `name` at checkoutDir() on a new branch `berth/<name>` from the
   * base, publishes that branch in the project, and seeds the session's shadow.
   */
  async create(
    project: Project,
    name: string,
    meta: { agent: string; owner: { uid: number; gid: number }; key: string; onMade?: (identity: DirIdentity) => void; continueBranch?: boolean },
  ): Promise<NewCheckout> {
    const made = await this.withRepo(project.path, async () => {
      const parent = await this.projectRoot(project.name);
      if (project.gitUrl) await this.remotes.refresh(project);
      const base = project.branch ?? (await currentBranch(project.path));
      if (!base) {
        throw new BerthError('CHECKOUT_FAILED', `the main checkout of ${project.name} is on a detached HEAD, so there is no base branch`, {
          hint: 'Check out a branch in the project (`git switch main`), then start the session again.',
        });
      }
      const baseSha = await revParse(project.path, `refs/heads/${base}`);
      if (!baseSha) throw new BerthError('CHECKOUT_FAILED', `base branch ${base} of ${project.name} has no commit yet`, { hint: 'Make a first commit in the project.' });
      const dir = join(parent, name);
      if (existsSync(dir)) {
        throw new BerthError('CHECKOUT_FAILED', `${dir} already exists (kept from an earlier session?)`, {
          hint: 'Look at it, save what you need, remove it, and start again; or choose another --name.',
        });
      }
      const branch = `berth/${name}`;
      // A branch of that name kept from an earlier session is never moved off work the base lacks.
      const earlier = await revParse(project.path, `refs/heads/${branch}`);
      // A task's next attempt (a pool's session) goes on from where the last one left its branch.
      const head = meta.continueBranch && earlier ? earlier : baseSha;
      if (head === baseSha && earlier && earlier !== baseSha && !(await isAncestor(project.path, earlier, baseSha))) {
        throw new BerthError('CHECKOUT_FAILED', `branch ${branch} already exists in ${project.name} with commits ${base} lacks (kept from an earlier session)`, {
          hint: `Merge or rename it (\`git branch -m ${branch} <new-name>\`), or start the session under another --name.`,
          details: { branch },
        });
      }
      const owner = process.getuid?.() === 0 && meta.owner.uid !== 0 ? meta.owner : null;
      await mkdir(dir, { mode: 0o755 });
      const st = await lstat(dir);
      const identity = { dev: st.dev, ino: st.ino };
      meta.onMade?.(identity);
      if (owner) await run('chown', ['-h', `${owner.uid}:${owner.gid}`, dir]);
      try {
        await git(
          [
            'clone', '--quiet', '--shared', '--no-checkout',
            '--config', `user.name=${meta.agent} (berth session ${name})`,
            '--config', `user.email=${name}@berth.invalid`,
            '--', project.path, dir,
          ],
          { cwd: parent, as: owner },
        );
        await git(['checkout', '--quiet', '-b', branch, head], { cwd: dir, as: owner });
        // The clone's remote would name a host path the container cannot reach: drop it, and the
        // tracking branch section with it, straight from the config file git just wrote.
        const cfg = join(dir, '.git', 'config');
        const text = await readFile(cfg, 'utf8');
        await writeFile(cfg, text.replace(/^\[(remote "origin"|branch "[^"]*")\][^[]*/gm, ''));
        // Every session shows in `git branch` of the project from its start.
        if (head === baseSha) await pgit(project.path, ['update-ref', `refs/heads/${branch}`, baseSha]);
      } catch (err) {
        await this.removal.removeDir(dir, identity).catch(() => {});
        throw new BerthError('CHECKOUT_FAILED', `cannot make the checkout for ${name}: ${gitMessage(err)}`, {
          hint: owner ? `The project's owner (uid ${owner.uid}) must be able to read ${project.path}.` : undefined,
        });
      }
      this.log.info({ project: project.name, dir, branch, base, baseSha }, 'Created session checkout');
      return { dir, branch, base, baseSha, head, identity };
    });
    // The shadow is the session's own: seeding it needs no hold on the project (20 starts at once
    // queue only for what touches the project).
    try {
      await this.shadows.seed({ key: meta.key, workTree: made.dir, branch: made.branch, base: made.base, baseSha: made.baseSha }, project.path, made.head);
    } catch (err) {
      await this.removal.removeDir(made.dir, made.identity).catch(() => {});
      throw new BerthError('CHECKOUT_FAILED', `cannot prepare berth's view of the checkout for ${name}: ${gitMessage(err)}`);
    }
    return made;
  }
}
