import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { appendFile, mkdir, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { BerthError, type MergeResult, type Project, type SessionDiff, type SessionStatus } from '@berth/client-sdk/protocol';
import type { Logger } from '../log.js';
import { git } from './git.js';
import { KeyedMutex } from './mutex.js';
import { isRealDir, safeRead } from './safe-fs.js';

const run = promisify(execFile);
const SHA = /^[0-9a-f]{40}(?:[0-9a-f]{24})?$/;
const REF = /^refs\/[A-Za-z0-9._\/-]+$/;
export const WORKTREES_DIR = '.worktrees';
const MAX_DIFF = 1024 * 1024;
const MAX_INDEX = 512 * 1024 * 1024;

/** Where an agent's git work lives: its clone, or the main checkout for read/shared sessions. */
export interface CheckoutRef {
  /** Session id (or any stable key) naming the shadow git dir. */
  key: string;
  /** The work tree the agent writes; its `.git` is a directory the agent controls. */
  workTree: string;
  /** The session branch inside that work tree, when it has one. */
  branch: string | null;
  base: string | null;
  baseSha: string | null;
}

export interface NewCheckout {
  dir: string;
  branch: string;
  base: string;
  baseSha: string;
}

/**
 * Session checkouts, and every git operation berthd does on repositories agents can write.
 *
 * A write session gets its own clone at `<repo>/.worktrees/<name>` (`git clone --shared`: objects
 * borrowed from the project through alternates) on branch `berth/<name>`; its container sees that
 * clone and, read-only at the same path, the project's object store, nothing else of the project.
 *
 * The clone's `.git` belongs to the agent, so berthd never runs git *as* that repository: it never
 * reads the clone's config, hooks or attributes-driven drivers. Instead it builds a shadow git dir
 * it owns (`$BERTH_HOME/shadow/<key>`: trusted config, the clone's and the project's objects as
 * alternates, a copy of the clone's index, HEAD read from files opened without following links) and
 * points git at the clone's work tree through it. Commits reach the project by fetching from the
 * shadow into `refs/heads/berth/<name>`; nothing else in the project is ever written from a session.
 */
export class CheckoutManager {
  private readonly locks = new KeyedMutex();

  constructor(
    private readonly home: string,
    private readonly log: Logger,
  ) {}

  /** Serialises git writes per repository (parallel `clone`/`fetch`/`update-ref` race on locks). */
  withRepo<T>(repo: string, fn: () => Promise<T>): Promise<T> {
    return this.locks.run(repo, fn);
  }

  // ---- projects cloned from a URL -------------------------------------------------------------

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
    await mkdir(join(dir, '..'), { recursive: true, mode: 0o700 });
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

  /** Fetches a URL project and fast-forwards its base branch when the main checkout allows it. */
  async refresh(project: Project): Promise<void> {
    if (!project.gitUrl) return;
    await git(['fetch', '--quiet', '--prune', 'origin'], { cwd: project.path, env: this.sshEnv(project), timeoutMs: 300_000 });
    const current = await this.currentBranch(project.path);
    const base = project.branch ?? current;
    if (!base || current !== base) return;
    if ((await this.mainDirty(project.path)).length) return;
    await git(['merge', '--ff-only', '--quiet', `refs/remotes/origin/${base}`], { cwd: project.path }).catch(() => {});
  }

  // ---- creating and removing session checkouts -------------------------------------------------

  /** The branch the main checkout has checked out (read from `.git/HEAD`; the project's own repository). */
  async currentBranch(repo: string): Promise<string | null> {
    const head = (await safeRead(repo, '.git/HEAD', 4096))?.toString('utf8').trim() ?? '';
    const m = /^ref: refs\/heads\/(.+)$/.exec(head);
    return m && !m[1]!.includes('..') ? m[1]! : null;
  }

  private async revParse(repo: string, ref: string): Promise<string | null> {
    try {
      const sha = (await git(['rev-parse', '-q', '--verify', `${ref}^{commit}`], { cwd: repo })).trim();
      return SHA.test(sha) ? sha : null;
    } catch {
      return null;
    }
  }

  /** Makes `<repo>/.worktrees/<name>` on a new branch `berth/<name>` from the base. */
  async create(project: Project, name: string, meta: { agent: string; owner: { uid: number; gid: number } }): Promise<NewCheckout> {
    return this.withRepo(project.path, async () => {
      if (project.gitUrl) await this.refresh(project);
      const base = project.branch ?? (await this.currentBranch(project.path));
      if (!base) {
        throw new BerthError('CHECKOUT_FAILED', `the main checkout of ${project.name} is on a detached HEAD, so there is no base branch`, {
          hint: 'Check out a branch in the project (`git switch main`), then start the session again.',
        });
      }
      const baseSha = await this.revParse(project.path, `refs/heads/${base}`);
      // (Three git processes in all: the base, the clone, the checkout; the rest is file work.)
      if (!baseSha) throw new BerthError('CHECKOUT_FAILED', `base branch ${base} of ${project.name} has no commit yet`, { hint: 'Make a first commit in the project.' });
      await this.excludeWorktrees(project.path);
      const dir = join(project.path, WORKTREES_DIR, name);
      if (existsSync(dir)) {
        throw new BerthError('CHECKOUT_FAILED', `${dir} already exists (kept from an earlier session?)`, {
          hint: 'Look at it, save what you need, remove it, and start again; or choose another --name.',
        });
      }
      const branch = `berth/${name}`;
      // As root, git runs as the project's owner, so the checkout is theirs without a chown pass.
      const owner = process.getuid?.() === 0 && meta.owner.uid !== 0 ? meta.owner : null;
      const make = async (as: { uid: number; gid: number } | null) => {
        const parent = join(project.path, WORKTREES_DIR);
        await mkdir(parent, { recursive: true });
        if (owner) await chownTree(parent, owner, false);
        await git(
          [
            'clone', '--quiet', '--shared', '--no-checkout',
            '--config', `user.name=${meta.agent} (berth session ${name})`,
            '--config', `user.email=${name}@berth.invalid`,
            '--', project.path, dir,
          ],
          { cwd: project.path, as },
        );
        await git(['checkout', '--quiet', '-b', branch, baseSha], { cwd: dir, as });
        // The clone's remote would name a host path the container cannot reach: drop it, and the
        // tracking branch section with it, straight from the config file git just wrote.
        const cfg = join(dir, '.git', 'config');
        const text = await readFile(cfg, 'utf8');
        await writeFile(cfg, text.replace(/^\[(remote "origin"|branch "[^"]*")\][^[]*/gm, ''));
      };
      try {
        // As root, git runs as the project's owner so the checkout is theirs from the start; when the
        // owner cannot reach the repository (a parent directory closed to them), root makes it and
        // hands it over.
        try {
          await make(owner);
        } catch (err) {
          if (!owner) throw err;
          await rm(dir, { recursive: true, force: true });
          await make(null);
          await chownTree(dir, owner);
        }
      } catch (err) {
        await rm(dir, { recursive: true, force: true });
        throw new BerthError('CHECKOUT_FAILED', `cannot make the checkout for ${name}: ${gitMessage(err)}`);
      }
      this.log.info({ project: project.name, dir, branch, base, baseSha }, 'Created session checkout');
      return { dir, branch, base, baseSha };
    });
  }

  /** Keeps `.worktrees/` out of `git status` of the main checkout. */
  private async excludeWorktrees(repo: string): Promise<void> {
    const file = join(repo, '.git', 'info', 'exclude');
    const line = `/${WORKTREES_DIR}/`;
    let text = '';
    try {
      text = await readFile(file, 'utf8');
    } catch {
      await mkdir(join(repo, '.git', 'info'), { recursive: true });
    }
    if (!text.split('\n').includes(line)) await appendFile(file, `${text && !text.endsWith('\n') ? '\n' : ''}# berth session checkouts\n${line}\n`);
  }

  // ---- the shadow git dir ------------------------------------------------------------------------

  /** HEAD of an agent-controlled work tree, read from files without following links. */
  async readHead(workTree: string): Promise<{ ref: string | null; sha: string | null }> {
    const head = (await safeRead(workTree, '.git/HEAD', 4096))?.toString('utf8').trim();
    if (!head) return { ref: null, sha: null };
    if (SHA.test(head)) return { ref: null, sha: head };
    const m = /^ref: (refs\/[^\s]+)$/.exec(head);
    if (!m || !REF.test(m[1]!) || m[1]!.includes('..')) return { ref: null, sha: null };
    return { ref: m[1]!, sha: await this.readRef(workTree, m[1]!) };
  }

  async readRef(workTree: string, ref: string): Promise<string | null> {
    if (!REF.test(ref) || ref.includes('..')) return null;
    const loose = (await safeRead(workTree, `.git/${ref}`, 4096))?.toString('utf8').trim();
    if (loose && SHA.test(loose)) return loose;
    const packed = (await safeRead(workTree, '.git/packed-refs', 64 * 1024 * 1024))?.toString('utf8') ?? '';
    for (const line of packed.split('\n')) {
      const [sha, name] = line.split(' ');
      if (name === ref && sha && SHA.test(sha)) return sha;
    }
    return null;
  }

  private shadowDir(key: string): string {
    return join(this.home, 'shadow', key.replace(/[^A-Za-z0-9_-]/g, '_'));
  }

  /**
   * Prepares the shadow git dir for `c` and returns the environment that makes git work on the
   * agent's work tree through it. The agent's config, hooks and info/attributes are never read.
   */
  async shadow(c: CheckoutRef, projectRepo: string): Promise<{ env: Record<string, string>; head: string | null; gitDir: string }> {
    const g = this.shadowDir(c.key);
    if (!existsSync(join(g, 'HEAD'))) {
      await mkdir(g, { recursive: true, mode: 0o700 });
      await git(['init', '--quiet', '--bare', g], { cwd: this.home });
      await writeFile(
        join(g, 'config'),
        [
          '[core]',
          '\trepositoryformatversion = 0',
          '\tbare = false',
          '\tfilemode = true',
          '\tsymlinks = true',
          '\thooksPath = /dev/null',
          '\tfsmonitor = false',
          '\tuntrackedCache = false',
          '[gc]',
          '\tauto = 0',
          '[status]',
          '\trelativePaths = false',
          '\tshowUntrackedFiles = all',
          '[diff]',
          '\tignoreSubmodules = all',
          '[submodule]',
          '\trecurse = false',
          '',
        ].join('\n'),
      );
      await rm(join(g, 'hooks'), { recursive: true, force: true });
    }
    const own = join(c.workTree, '.git', 'objects');
    const alternates = [join(projectRepo, '.git', 'objects')];
    if (c.workTree !== projectRepo) {
      if (!(await isRealDir(c.workTree, '.git/objects'))) {
        throw new BerthError('CHECKOUT_FAILED', `the session's git directory at ${c.workTree}/.git was replaced or linked elsewhere; berth will not read it`);
      }
      alternates.unshift(own);
    }
    await mkdir(join(g, 'objects', 'info'), { recursive: true });
    await writeFile(join(g, 'objects', 'info', 'alternates'), `${alternates.join('\n')}\n`);
    const { sha } = await this.readHead(c.workTree);
    if (sha) await git(['update-ref', '--no-deref', 'HEAD', sha], { cwd: g, env: { GIT_DIR: g } });
    const index = await safeRead(c.workTree, '.git/index', MAX_INDEX);
    if (index) await writeFile(join(g, 'index'), index);
    else await rm(join(g, 'index'), { force: true });
    return { env: { GIT_DIR: g, GIT_WORK_TREE: c.workTree, GIT_INDEX_FILE: join(g, 'index') }, head: sha, gitDir: g };
  }

  async dropShadow(key: string): Promise<void> {
    await rm(this.shadowDir(key), { recursive: true, force: true });
  }

  /** Everything in the work tree (tracked, changed and untracked) as a tree object in the shadow. */
  private async snapshotTree(env: Record<string, string>, cwd: string): Promise<string> {
    const tmpIndex = `${env.GIT_INDEX_FILE}.snapshot`;
    if (existsSync(env.GIT_INDEX_FILE!)) await writeFile(tmpIndex, await readFile(env.GIT_INDEX_FILE!));
    else await rm(tmpIndex, { force: true });
    const e = { ...env, GIT_INDEX_FILE: tmpIndex };
    try {
      await git(['add', '--all', '--ignore-errors', '--', '.'], { cwd, env: e });
      return (await git(['write-tree'], { cwd, env: e })).trim();
    } finally {
      await rm(tmpIndex, { force: true });
    }
  }

  // ---- inspection -----------------------------------------------------------------------------

  async dirty(c: CheckoutRef, projectRepo: string): Promise<{ path: string; status: string }[]> {
    const { env, gitDir } = await this.shadow(c, projectRepo);
    const out = await git(['status', '--porcelain=v1', '-z', '--untracked-files=all', '--ignore-submodules=all', '--no-renames'], { cwd: gitDir, env });
    return parsePorcelain(out).filter((d) => !(c.workTree === projectRepo && d.path.startsWith(`${WORKTREES_DIR}/`)));
  }

  async status(c: CheckoutRef, projectRepo: string): Promise<SessionStatus> {
    const { env, head, gitDir } = await this.shadow(c, projectRepo);
    const dirty = parsePorcelain(
      await git(['status', '--porcelain=v1', '-z', '--untracked-files=all', '--ignore-submodules=all', '--no-renames'], { cwd: gitDir, env }),
    ).filter((d) => !(c.workTree === projectRepo && d.path.startsWith(`${WORKTREES_DIR}/`)));
    const branch = c.branch ?? (await this.readHead(c.workTree)).ref?.replace(/^refs\/heads\//, '') ?? null;
    const tip = c.branch ? await this.readRef(c.workTree, `refs/heads/${c.branch}`) : head;
    const baseSha = c.base ? await this.revParse(projectRepo, `refs/heads/${c.base}`) : null;
    let ahead = 0;
    let behind = 0;
    if (tip && baseSha) {
      const counts = (await git(['rev-list', '--left-right', '--count', `${baseSha}...${tip}`], { cwd: gitDir, env })).trim().split(/\s+/);
      behind = Number(counts[0]);
      ahead = Number(counts[1]);
    }
    let lastCommit: SessionStatus['lastCommit'] = null;
    if (tip) {
      const [sha, subject, author, date] = (await git(['log', '-1', '--format=%H%x00%s%x00%an%x00%aI', tip], { cwd: gitDir, env })).trim().split('\0');
      lastCommit = { sha: sha!, subject: subject ?? '', author: author ?? '', date: date ?? '' };
    }
    return { branch, base: c.base ?? branch, ahead, behind, dirty, lastCommit };
  }

  async diff(c: CheckoutRef, projectRepo: string, stat: boolean): Promise<SessionDiff> {
    if (!c.branch || !c.base || !c.baseSha) throw new BerthError('NO_CHECKOUT', 'this session has no branch of its own');
    const { env, gitDir } = await this.shadow(c, projectRepo);
    const tree = await this.snapshotTree(env, gitDir);
    const baseSha = (await this.revParse(projectRepo, `refs/heads/${c.base}`)) ?? c.baseSha;
    const mergeBase = (await git(['merge-base', baseSha, (await this.readRef(c.workTree, `refs/heads/${c.branch}`)) ?? c.baseSha], { cwd: gitDir, env }).catch(() => baseSha)).trim();
    let text = await git(['diff', '--no-color', '--no-ext-diff', '--no-textconv', '--ignore-submodules=all', ...(stat ? ['--stat'] : ['--binary']), mergeBase, tree], {
      cwd: gitDir,
      env,
    });
    const truncated = Buffer.byteLength(text) > MAX_DIFF;
    if (truncated) text = Buffer.from(text).subarray(0, MAX_DIFF).toString('utf8');
    return { base: c.base, branch: c.branch, diff: text, truncated };
  }

  // ---- moving work into the project --------------------------------------------------------------

  /** Copies the session branch's commits into the project as `refs/heads/berth/<name>`. Returns the tip. */
  async sync(c: CheckoutRef, projectRepo: string): Promise<string | null> {
    if (!c.branch) return null;
    const tip = await this.readRef(c.workTree, `refs/heads/${c.branch}`);
    if (!tip) return null;
    return this.withRepo(projectRepo, async () => {
      const have = await this.revParse(projectRepo, `refs/heads/${c.branch}`);
      if (have === tip) return tip;
      await this.importCommit(c, projectRepo, tip, `refs/heads/${c.branch}`);
      this.log.debug({ branch: c.branch, tip }, 'Imported session commits');
      return tip;
    });
  }

  /** Fetch `sha` (reachable through the shadow) into `ref` of the project. Caller holds the repo lock. */
  private async importCommit(c: CheckoutRef, projectRepo: string, sha: string, ref: string): Promise<void> {
    const { gitDir } = await this.shadow(c, projectRepo);
    await git(['update-ref', 'refs/heads/berth-import', sha], { cwd: gitDir, env: { GIT_DIR: gitDir } });
    await git(['fetch', '--quiet', '--no-tags', '--no-write-fetch-head', '--update-head-ok', gitDir, `+refs/heads/berth-import:${ref}`], { cwd: projectRepo });
  }

  /** Merges the session branch into the base branch of the main checkout, or changes nothing. */
  async merge(c: CheckoutRef, projectRepo: string, strategy: 'ff' | 'merge' | 'squash', message?: string): Promise<MergeResult> {
    if (!c.branch || !c.base) throw new BerthError('NO_CHECKOUT', 'this session has no branch of its own to merge');
    const { branch, base } = c;
    await this.sync(c, projectRepo);
    return this.withRepo(projectRepo, async () => {
      const current = await this.currentBranch(projectRepo);
      if (current !== c.base) {
        throw new BerthError('NOT_ON_BASE_BRANCH', `the main checkout is on ${current ?? 'a detached HEAD'}, not on ${c.base}`, {
          details: { current, base: c.base },
        });
      }
      const dirty = await this.mainDirty(projectRepo);
      if (dirty.length) {
        throw new BerthError('MAIN_CHECKOUT_DIRTY', `the main checkout has uncommitted changes (${dirty.slice(0, 5).join(', ')})`, { details: { paths: dirty } });
      }
      const who = await this.identity(projectRepo);
      const ref = `refs/heads/${c.branch}`;
      const msg = message ?? `Merge session branch ${c.branch}`;
      const call = { cwd: projectRepo, config: who };
      try {
        if (strategy === 'ff') await git(['merge', '--ff-only', '--quiet', ref], call);
        else if (strategy === 'merge') await git(['merge', '--no-ff', '--quiet', '--no-verify', '-m', msg, ref], call);
        else {
          await git(['merge', '--squash', '--quiet', ref], call);
          await git(['commit', '--quiet', '--no-verify', '-m', msg], call);
        }
      } catch (err) {
        const conflicted = (await git(['diff', '--name-only', '--diff-filter=U'], { cwd: projectRepo }).catch(() => ''))
          .split('\n')
          .filter(Boolean);
        // Leave the main checkout exactly as it was: it was clean before we began.
        if (strategy === 'merge') await git(['merge', '--abort'], { cwd: projectRepo }).catch(() => {});
        await git(['reset', '--quiet', '--merge'], { cwd: projectRepo }).catch(() => {});
        if (strategy === 'ff' && !conflicted.length) {
          throw new BerthError('MERGE_NOT_FAST_FORWARD', `${c.base} has commits that ${c.branch} lacks`, { details: { base: c.base, branch: c.branch } });
        }
        if (conflicted.length) {
          throw new BerthError('MERGE_CONFLICT', `merging ${c.branch} into ${c.base} conflicts in ${conflicted.join(', ')}`, { details: { paths: conflicted } });
        }
        throw new BerthError('MERGE_CONFLICT', `merging ${c.branch} into ${c.base} failed: ${gitMessage(err)}`, { details: { paths: [] } });
      }
      const commit = (await git(['rev-parse', 'HEAD'], { cwd: projectRepo })).trim();
      this.log.info({ branch: c.branch, base: c.base, strategy, commit }, 'Merged session branch');
      return { strategy, base, branch, commit };
    });
  }

  /** Uncommitted changes of the main checkout, `.worktrees/` aside (read through a shadow). */
  async mainDirty(projectRepo: string): Promise<string[]> {
    const d = await this.dirty({ key: `main-${hashKey(projectRepo)}`, workTree: projectRepo, branch: null, base: null, baseSha: null }, projectRepo);
    return d.map((x) => x.path);
  }

  private async identity(repo: string): Promise<string[]> {
    const email = await git(['config', '--get', 'user.email'], { cwd: repo }).catch(() => '');
    return email.trim() ? [] : ['user.name=berth', 'user.email=berth@localhost'];
  }

  /**
   * Removes a session checkout without losing work: uncommitted changes (only with `force`) are saved
   * as a commit on `refs/berth/wip/<name>`; the branch is deleted only when fully merged into the base,
   * else kept (or, with `deleteBranch`, moved to `refs/berth/archive/<name>`).
   */
  async remove(
    c: CheckoutRef & { name: string },
    projectRepo: string,
    opts: { force: boolean; deleteBranch: boolean },
  ): Promise<{ kept: { branch?: string; wip?: string; archive?: string }; notes: string[]; removed: boolean }> {
    const kept: { branch?: string; wip?: string; archive?: string } = {};
    const notes: string[] = [];
    if (!existsSync(c.workTree)) return { kept, notes, removed: true };
    let dirty: { path: string; status: string }[];
    try {
      dirty = await this.dirty(c, projectRepo);
      await this.sync(c, projectRepo);
    } catch (err) {
      // A checkout berth cannot read safely is not deleted either: whatever is in it stays.
      if (err instanceof BerthError && err.code === 'CHECKOUT_FAILED') {
        notes.push(`checkout ${c.workTree} was kept untouched: ${err.message}`);
        await this.dropShadow(c.key);
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
        const { env, head, gitDir } = await this.shadow(c, projectRepo);
        const tree = await this.snapshotTree(env, gitDir);
        const parents = head ? ['-p', head] : [];
        const wip = (
          await git(['commit-tree', tree, ...parents, '-m', `berth: uncommitted work of session ${c.name}`], {
            cwd: gitDir,
            env: { GIT_DIR: gitDir },
            config: ['user.name=berth', 'user.email=berth@localhost'],
          })
        ).trim();
        await this.importCommit(c, projectRepo, wip, `refs/berth/wip/${c.name}`);
        kept.wip = `refs/berth/wip/${c.name}`;
        notes.push(`uncommitted changes saved as ${kept.wip}: \`git checkout -b rescue ${kept.wip}\` to get them back`);
      }
      if (c.branch && c.base) {
        const tip = await this.revParse(projectRepo, `refs/heads/${c.branch}`);
        if (tip) {
          // (Not `merge-base --is-ancestor`: its answer is only in the exit status, which simple-git drops.)
          const unmerged = Number((await git(['rev-list', '--count', `refs/heads/${c.base}..${tip}`], { cwd: projectRepo })).trim());
          const merged = unmerged === 0;
          if (merged) {
            await git(['update-ref', '-d', `refs/heads/${c.branch}`, tip], { cwd: projectRepo });
            notes.push(`branch ${c.branch} was fully merged into ${c.base} and is deleted`);
          } else if (opts.deleteBranch) {
            await git(['update-ref', `refs/berth/archive/${c.name}`, tip], { cwd: projectRepo });
            await git(['update-ref', '-d', `refs/heads/${c.branch}`, tip], { cwd: projectRepo });
            kept.archive = `refs/berth/archive/${c.name}`;
            notes.push(`branch ${c.branch} was not merged; its commits are kept as ${kept.archive}: \`git branch ${c.branch} ${kept.archive}\` restores it`);
          } else {
            kept.branch = c.branch;
            notes.push(`branch ${c.branch} has work not merged into ${c.base} and is kept: \`git log ${c.base}..${c.branch}\``);
          }
        }
      }
    });
    await rm(c.workTree, { recursive: true, force: true });
    await this.dropShadow(c.key);
    this.log.info({ dir: c.workTree, kept }, 'Removed session checkout');
    return { kept, notes, removed: true };
  }

  // ---- repairs ------------------------------------------------------------------------------------

  /**
   * Startup and scheduled repairs of one project: prune stale worktree records, remove checkouts no
   * session owns (kept if they hold uncommitted work; their commits are imported first), and remove
   * `index.lock` files older than `lockAgeMs` that no live process holds. Every repair is logged.
   */
  async repair(project: Project, owned: Set<string>, busy: Set<string>, lockAgeMs = 10 * 60_000): Promise<string[]> {
    const done: string[] = [];
    const repo = project.path;
    await git(['worktree', 'prune'], { cwd: repo }).catch(() => {});
    const root = join(repo, WORKTREES_DIR);
    let names: string[] = [];
    try {
      names = await readdir(root);
    } catch {
      // no checkouts
    }
    for (const name of names) {
      const dir = join(root, name);
      if (owned.has(dir)) continue;
      if (!(await isRealDir(root, name))) continue;
      const ref: CheckoutRef & { name: string } = { key: `orphan-${hashKey(dir)}`, workTree: dir, branch: `berth/${name}`, base: project.branch ?? (await this.currentBranch(repo)), baseSha: null, name };
      try {
        const r = await this.remove(ref, repo, { force: false, deleteBranch: false });
        const msg = r.removed ? `removed checkout ${dir} of a session that no longer exists` : `kept checkout ${dir} of a gone session: it has uncommitted changes`;
        this.log.warn({ dir, kept: r.kept }, msg);
        done.push(msg);
      } catch (err) {
        this.log.warn({ dir, err: (err as Error).message }, 'Could not repair checkout');
      }
    }
    for (const dir of [repo, ...names.map((n) => join(root, n))]) {
      const lock = join(dir, '.git', 'index.lock');
      let st;
      try {
        st = await stat(lock);
      } catch {
        continue;
      }
      if (Date.now() - st.mtimeMs < lockAgeMs || busy.has(dir) || (await gitProcessIn(dir))) continue;
      await rm(lock, { force: true });
      const msg = `removed stale ${lock} (${Math.round((Date.now() - st.mtimeMs) / 60000)} min old, no git process)`;
      this.log.warn({ lock }, msg);
      done.push(msg);
    }
    return done;
  }
}

function parsePorcelain(out: string): { path: string; status: string }[] {
  return out
    .split('\0')
    .filter(Boolean)
    .map((e) => ({ status: e.slice(0, 2).trim(), path: e.slice(3) }));
}

export function gitMessage(err: unknown): string {
  return String((err as Error)?.message ?? err)
    .split('\n')
    .filter((l) => l.trim())
    .slice(-3)
    .join(' ')
    .slice(0, 500);
}

function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

function hashKey(s: string): string {
  return createHash('sha256').update(s).digest('hex').slice(0, 16);
}

/** Files the agent writes must belong to the project's owner: when berthd is root, hand the tree over. */
export async function chownTree(dir: string, owner: { uid: number; gid: number } | null | undefined, recursive = true): Promise<void> {
  if (!owner || process.getuid?.() !== 0 || owner.uid === 0) return;
  await run('chown', [...(recursive ? ['-R'] : []), '-h', `${owner.uid}:${owner.gid}`, dir]);
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
