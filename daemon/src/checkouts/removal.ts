import { existsSync } from 'node:fs';
import { lstat, readFile, readdir, rm, rmdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { BerthError, type Project } from '@berth/client-sdk/protocol';
import type { Logger } from '../log.js';
import { GitError, git } from './git.js';
import type { Imports } from './imports.js';
import type { Inspector } from './inspect.js';
import { gitMessage, pgit, revParse } from './project-git.js';
import { isRealDir } from './safe-fs.js';
import { hashKey, type CheckoutRef, type Shadows } from './shadow.js';

const KEEP_UNTOUCHED: ReadonlySet<string> = new Set(['CHECKOUT_FAILED', 'IMPORT_FAILED', 'GIT_FAILED']);

export interface DirIdentity {
  dev: number;
  ino: number;
}

/**
 * Taking checkouts away without losing work, and the periodic repairs. berth removes only a
 * directory it recorded making: `<root>/<project>/<name>`, reached through real directories, the
 * same device and inode; links inside are removed as links, never followed.
 */
export class Removals {
  constructor(
    private readonly home: string,
    private readonly root: string,
    private readonly shadows: Shadows,
    private readonly inspect: Inspector,
    private readonly imports: Imports,
    private readonly withRepo: <T>(repo: string, fn: () => Promise<T>) => Promise<T>,
    private readonly log: Logger,
  ) {}

  /**
   * Removes a checkout directory berth made: it must be exactly `<root>/<project>/<name>`, reached
   * through real directories, and (when recorded) the same directory by device and inode. Links
   * inside are removed as links, never followed.
   */
  async removeDir(dir: string, identity: DirIdentity | null): Promise<boolean> {
    const rel = dir.startsWith(`${this.root}/`) ? dir.slice(this.root.length + 1) : null;
    if (!rel || rel.split('/').length !== 2 || rel.split('/').some((p) => !p || p === '.' || p === '..')) {
      this.log.warn({ dir }, 'Refusing to remove a directory outside berth’s checkouts');
      return false;
    }
    let st;
    try {
      st = await lstat(dir);
    } catch {
      return true;
    }
    if (!(await isRealDir(this.home, join('checkouts', rel)))) {
      this.log.warn({ dir }, 'Refusing to remove a checkout reached through a link');
      return false;
    }
    if (identity && (st.dev !== identity.dev || st.ino !== identity.ino)) {
      this.log.warn({ dir }, 'Refusing to remove a checkout that is not the directory berth made');
      return false;
    }
    await rm(dir, { recursive: true, force: true });
    return true;
  }

  /**
   * Removes a session checkout without losing work: uncommitted changes (only with `force`) are saved
   * as a commit on `refs/berth/wip/<name>`; the branch is deleted only when fully merged into the base,
   * else kept (or, with `deleteBranch`, moved to `refs/berth/archive/<name>`). Safe to run again after
   * an interruption: every step is idempotent, and the directory goes last.
   */
  async remove(
    c: CheckoutRef & { name: string; merged?: { strategy: string; commit: string; branchTip: string } | null },
    projectRepo: string,
    opts: { force: boolean; deleteBranch: boolean; identity?: DirIdentity | null },
  ): Promise<{ kept: { branch?: string; wip?: string; archive?: string }; notes: string[]; removed: boolean }> {
    const kept: { branch?: string; wip?: string; archive?: string } = {};
    const notes: string[] = [];
    if (!existsSync(c.workTree)) {
      await this.shadows.drop(c.key);
      return { kept, notes, removed: true };
    }
    let dirty: { path: string; status: string }[];
    try {
      dirty = await this.inspect.dirty(c, projectRepo);
      await this.imports.sync(c, projectRepo);
    } catch (err) {
      // A checkout berth cannot read safely, or whose commits git refuses to import (a tree fsck
      // rejects, a git stuck on a FIFO), is not deleted either: whatever is in it stays, and the
      // removal of the session still finishes instead of retrying forever.
      if (err instanceof GitError || (err instanceof BerthError && KEEP_UNTOUCHED.has(err.code))) {
        notes.push(`checkout ${c.workTree} was kept untouched: ${err.message}`);
        await this.shadows.drop(c.key);
        return { kept, notes, removed: false };
      }
      throw err;
    }
    if (dirty.length && !opts.force) {
      notes.push(`checkout ${c.workTree} has uncommitted changes and was kept; remove it yourself, or save them first`);
      return { kept, notes, removed: false };
    }
    await this.withRepo(projectRepo, async () => {
      if (dirty.length) {
        const { tree, head, gitDir } = await this.inspect.snapshotTree(c, projectRepo);
        const parents = head ? ['-p', head] : [];
        const wip = (
          await git(['commit-tree', tree, ...parents, '-m', `berth: uncommitted work of session ${c.name}`], {
            cwd: gitDir,
            env: { GIT_DIR: gitDir },
            config: ['user.name=berth', 'user.email=berth@localhost'],
          })
        ).trim();
        // A name used again (a pool's task-N, attempt after attempt) never overwrites what an earlier session left.
        let ref = `refs/berth/wip/${c.name}`;
        for (let n = 2; (await revParse(projectRepo, ref)) !== null; n++) ref = `refs/berth/wip/${c.name}-${n}`;
        // The wip commit's own objects live in the shadow's store: offer it to the import too.
        await this.imports.importMany(projectRepo, [], [{ name: ref, sha: wip }], [join(gitDir, 'objects'), join(gitDir, 'agent-objects')]);
        kept.wip = ref;
        notes.push(`uncommitted changes saved as ${kept.wip}: \`git checkout -b rescue ${kept.wip}\` to get them back`);
      }
      if (c.branch && c.base) {
        const tip = await revParse(projectRepo, `refs/heads/${c.branch}`);
        if (tip) {
          const unmerged = Number((await pgit(projectRepo, ['rev-list', '--count', `refs/heads/${c.base}..${tip}`])).trim());
          if (unmerged === 0) {
            await pgit(projectRepo, ['update-ref', '-d', `refs/heads/${c.branch}`, tip]);
            notes.push(`branch ${c.branch} was fully merged into ${c.base} and is deleted`);
          } else if (c.merged?.strategy === 'squash' && c.merged.branchTip === tip) {
            // Squashed by `berth merge` and not moved since: merged, though git cannot tell. Its own
            // commits stay reachable (no operation destroys a commit).
            await pgit(projectRepo, ['update-ref', `refs/berth/archive/${c.name}`, tip]);
            await pgit(projectRepo, ['update-ref', '-d', `refs/heads/${c.branch}`, tip]);
            kept.archive = `refs/berth/archive/${c.name}`;
            notes.push(`branch ${c.branch} was squash-merged into ${c.base} as ${c.merged.commit.slice(0, 12)} and is deleted; its commits are kept as ${kept.archive}`);
          } else if (opts.deleteBranch) {
            await pgit(projectRepo, ['update-ref', `refs/berth/archive/${c.name}`, tip]);
            await pgit(projectRepo, ['update-ref', '-d', `refs/heads/${c.branch}`, tip]);
            kept.archive = `refs/berth/archive/${c.name}`;
            notes.push(`branch ${c.branch} was not merged; its commits are kept as ${kept.archive}: \`git branch ${c.branch} ${kept.archive}\` restores it`);
          } else {
            kept.branch = c.branch;
            notes.push(`branch ${c.branch} has work not merged into ${c.base} and is kept: \`git log ${c.base}..${c.branch}\``);
          }
        }
      }
    });
    if (!(await this.removeDir(c.workTree, opts.identity ?? null))) {
      notes.push(`checkout ${c.workTree} was kept: it is not the directory berth made`);
      return { kept, notes, removed: false };
    }
    await this.shadows.drop(c.key);
    // The project's checkouts directory goes with its last checkout (rmdir: only when empty), under
    // the project's lock, which a new checkout holds from making that directory to filling it.
    await this.withRepo(projectRepo, () => rmdir(dirname(c.workTree)).catch(() => {}));
    this.log.info({ dir: c.workTree, kept }, 'Removed session checkout');
    return { kept, notes, removed: true };
  }

  // ---- repairs ------------------------------------------------------------------------------------

  /**
   * Startup and scheduled repairs of one project: checkouts under berth's root that no session owns
   * are reported, never removed (berth removes only what its records say it made; see
   * SessionCheckouts for finishing interrupted creations and removals); `index.lock` files older
   * than `lockAgeMs` that no live process holds are removed. Every repair is logged.
   */
  async repair(project: Project, owned: Set<string>, busy: Set<string>, lockAgeMs = 10 * 60_000): Promise<string[]> {
    const done: string[] = [];
    const repo = project.path;
    const root = join(this.root, project.name);
    let names: string[] = [];
    if (await isRealDir(this.home, join('checkouts', project.name))) names = await readdir(root).catch(() => []);
    for (const name of names) {
      const dir = join(root, name);
      if (owned.has(dir)) continue;
      if (!(await isRealDir(root, name))) continue;
      // Its commits still reach the project (as berth/<name>), whatever became of its record.
      await this.imports.sync({ key: `orphan-${hashKey(dir)}`, workTree: dir, branch: `berth/${name}`, base: null, baseSha: null }, repo).catch((err: unknown) =>
        this.log.warn({ dir, err: gitMessage(err) }, 'Could not import the commits of a checkout no session owns'),
      );
      const msg = `checkout ${dir} belongs to no session berth knows; it is left as it is (look at it, then remove it yourself)`;
      this.log.warn({ dir }, msg);
      done.push(msg);
    }
    for (const dir of [repo, ...names.filter((n) => owned.has(join(root, n))).map((n) => join(root, n))]) {
      if (!(await isRealDir(dir, '.git'))) continue;
      const lock = join(dir, '.git', 'index.lock');
      let st;
      try {
        st = await lstat(lock);
      } catch {
        continue;
      }
      if (!st.isFile() || Date.now() - st.mtimeMs < lockAgeMs || busy.has(dir) || (await gitProcessIn(dir))) continue;
      await rm(lock, { force: true });
      const msg = `removed stale ${lock} (${Math.round((Date.now() - st.mtimeMs) / 60000)} min old, no git process)`;
      this.log.warn({ lock }, msg);
      done.push(msg);
    }
    return done;
  }
}

/** Whether a host process named git has its working directory in `dir`. */
async function gitProcessIn(dir: string): Promise<boolean> {
  let pids: string[];
  try {
    pids = (await readdir('/proc')).filter((p) => /^\d+$/.test(p));
  } catch {
    return true; // cannot tell: assume busy
  }
  const { readlink } = await import('node:fs/promises');
  for (const pid of pids) {
    try {
      const comm = (await readFile(`/proc/${pid}/comm`, 'utf8')).trim();
      if (!comm.startsWith('git')) continue;
      const cwd = await readlink(`/proc/${pid}/cwd`);
      if (cwd === dir || cwd.startsWith(`${dir}/`)) return true;
    } catch {
      // gone, or not ours to read
    }
  }
  return false;
}
