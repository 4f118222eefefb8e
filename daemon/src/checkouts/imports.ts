import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { BerthError, type MergeResult } from '@berth/client-sdk/protocol';
import type { Logger } from '../log.js';
import { git, gitPipe, type GitCall } from './git.js';
import type { Inspector } from './inspect.js';
import { untrackedInTheWay } from './merge-guard.js';
import { currentBranch, gitMessage, ownerIdentity, pgit, projectCall, revParse } from './project-git.js';
import { SHA, hashKey, readRef, type CheckoutRef, type Shadows } from './shadow.js';

export interface ImportItem {
  ref: CheckoutRef & { name: string };
  /** The tip to import, read from the clone. */
  tip: string;
}

/**
 * Moving work into the project: importing sessions' commits as `refs/heads/berth/<name>` (checked
 * as `git fsck` would) and merging a session branch into the main checkout without touching what
 * the user keeps untracked.
 */
export class Imports {
  constructor(
    private readonly home: string,
    private readonly shadows: Shadows,
    private readonly inspect: Inspector,
    private readonly withRepo: <T>(repo: string, fn: () => Promise<T>) => Promise<T>,
    private readonly log: Logger,
  ) {}

  /** The tips of `refs/heads/berth/*` in the project. */
  async importedTips(projectRepo: string): Promise<Map<string, string>> {
    const out = await pgit(projectRepo, ['for-each-ref', '--format=%(objectname) %(refname)', 'refs/heads/berth/']);
    const m = new Map<string, string>();
    for (const line of out.split('\n')) {
      const [sha, ref] = line.split(' ');
      if (sha && ref && SHA.test(sha)) m.set(ref.slice('refs/heads/'.length), sha);
    }
    return m;
  }

  /**
   * Imports many sessions' commits into the project at once: berthd packs what the project lacks
   * from the sessions' mirrored objects (one `pack-objects`), the project's owner indexes that pack
   * (one `index-pack`, which verifies every object) and moves exactly the refs
   * `refs/heads/berth/<name>` (one `update-ref` transaction). Caller holds the project's lock.
   * Objects an agent made are checked as `git fsck` would (`--strict`): trees with duplicate
   * entries, `.git` in any spelling, `..`, hostile `.gitmodules` never reach the project. Objects
   * fetched from the project's own upstream (`upstream`) are taken as git takes them from a fetch.
   */
  async importMany(
    projectRepo: string,
    items: ImportItem[],
    refs: { name: string; sha: string }[],
    extraAlternates: string[] = [],
    deletes: string[] = [],
    upstream = false,
  ): Promise<void> {
    if (!items.length && !refs.length && !deletes.length) return;
    const have = await pgit(projectRepo, ['for-each-ref', '--format=%(objectname)', 'refs/heads/']);
    const exclude = [...new Set(have.split('\n').filter((x) => SHA.test(x)))];
    const g = join(this.home, 'import', hashKey(projectRepo));
    if (!existsSync(join(g, 'HEAD'))) {
      await mkdir(g, { recursive: true, mode: 0o700 });
      await git(['init', '--quiet', '--bare', g], { cwd: this.home });
    }
    const alternates = [join(projectRepo, '.git', 'objects'), ...items.map((i) => join(this.shadows.dir(i.ref.key), 'agent-objects')), ...extraAlternates];
    await mkdir(join(g, 'objects', 'info'), { recursive: true });
    await writeFile(join(g, 'objects', 'info', 'alternates'), `${alternates.join('\n')}\n`);
    const tips = [...new Set([...items.map((i) => i.tip), ...refs.map((r) => r.sha)])];
    const input = `${[...tips, ...exclude.map((x) => `^${x}`)].join('\n')}\n`;
    const project = await projectCall(projectRepo);
    const updates = [...items.map((i) => ({ name: `refs/heads/${i.ref.branch}`, sha: i.tip })), ...refs];
    const transaction = [...updates.map((u) => `update ${u.name} ${u.sha}\n`), ...deletes.map((d) => `delete ${d}\n`)].join('');
    try {
      if (tips.length) {
        await gitPipe(
          { args: ['pack-objects', '--revs', '--stdout', '--thin', '--delta-base-offset', '-q'], call: { cwd: g, env: { GIT_DIR: g }, input } },
          { args: ['index-pack', '--stdin', '--fix-thin', ...(upstream ? [] : ['--strict'])], call: project },
        );
      }
      await git(['update-ref', '--stdin'], { ...project, input: transaction });
    } catch (err) {
      if (err instanceof BerthError) throw err;
      throw new BerthError('IMPORT_FAILED', `git refused to bring ${updates.map((u) => u.name).join(', ') || 'the refs'} into ${projectRepo}: ${gitMessage(err)}`, {
        details: { refs: updates.map((u) => u.name) },
      });
    }
  }

  /** Copies the session branch's commits into the project as `refs/heads/berth/<name>`. Returns the tip. */
  async sync(c: CheckoutRef, projectRepo: string): Promise<string | null> {
    if (!c.branch) return null;
    const tip = await readRef(c.workTree, `refs/heads/${c.branch}`);
    if (!tip) return null;
    return this.withRepo(projectRepo, async () => {
      const have = await revParse(projectRepo, `refs/heads/${c.branch}`);
      if (have === tip) return tip;
      if (c.workTree !== projectRepo) await this.shadows.refreshMirror(c, projectRepo);
      await this.importMany(projectRepo, [{ ref: { ...c, name: c.branch!.slice('berth/'.length) }, tip }], []);
      this.log.debug({ branch: c.branch, tip }, 'Imported session commits');
      return tip;
    });
  }

  /** Merges the session branch into the base branch of the main checkout, or changes nothing. */
  async merge(c: CheckoutRef, projectRepo: string, strategy: 'ff' | 'merge' | 'squash', message?: string): Promise<Omit<MergeResult, 'leftOut'>> {
    if (!c.branch || !c.base) throw new BerthError('NO_CHECKOUT', 'this session has no branch of its own to merge');
    const { branch, base } = c;
    const branchTip = await this.sync(c, projectRepo);
    if (!branchTip) throw new BerthError('NO_CHECKOUT', `the session branch ${c.branch} has no commits to merge`);
    return this.withRepo(projectRepo, async () => {
      const current = await currentBranch(projectRepo);
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
      const call = await projectCall(projectRepo, { config: who });
      const msg = message ?? (strategy === 'squash' ? await squashMessage(call, branch, ref) : `Merge session branch ${branch}`);
      // A merged tree never replaces or deletes what the user keeps untracked (.env, build output,
      // anything in .git/info/exclude): checked here for every strategy, because the ort merge does
      // not honour --no-overwrite-ignore (kept for the fast-forward path, which does).
      const changed = (await git(['diff-tree', '-r', '-z', '--name-only', '--no-renames', 'HEAD', ref], call)).split('\0').filter(Boolean);
      const tracked = (await git(['ls-files', '-z', '--full-name'], call)).split('\0').filter(Boolean);
      const inTheWay = await untrackedInTheWay(projectRepo, changed, tracked);
      if (inTheWay.length) {
        throw new BerthError(
          'MERGE_CONFLICT',
          `merging ${c.branch} into ${c.base} would overwrite or delete files in the main checkout that git does not track: ${inTheWay.slice(0, 5).join(', ')}`,
          { details: { paths: inTheWay } },
        );
      }
      try {
        if (strategy === 'ff') await git(['merge', '--ff-only', '--quiet', '--no-overwrite-ignore', ref], call);
        else if (strategy === 'merge') await git(['merge', '--no-ff', '--quiet', '--no-verify', '--no-overwrite-ignore', '-m', msg, ref], call);
        else {
          await git(['merge', '--squash', '--quiet', '--no-overwrite-ignore', ref], call);
          await git(['commit', '--quiet', '--no-verify', '-m', msg], call);
        }
      } catch (err) {
        const conflicted = (await git(['diff', '--name-only', '--diff-filter=U'], call).catch(() => ''))
          .split('\n')
          .filter(Boolean);
        // Leave the main checkout exactly as it was: it was clean before we began.
        if (strategy === 'merge') await git(['merge', '--abort'], call).catch(() => {});
        await git(['reset', '--quiet', '--merge'], call).catch(() => {});
        const text = String((err as Error).message);
        if (/would be overwritten|untracked working tree files|ignored/i.test(text) && !conflicted.length) {
          throw new BerthError('MERGE_CONFLICT', `merging ${c.branch} into ${c.base} would overwrite files in the main checkout that git does not track: ${gitMessage(err)}`, {
            details: { paths: [] },
          });
        }
        if (strategy === 'ff' && !conflicted.length) {
          throw new BerthError('MERGE_NOT_FAST_FORWARD', `${c.base} has commits that ${c.branch} lacks`, { details: { base: c.base, branch: c.branch } });
        }
        if (conflicted.length) {
          throw new BerthError('MERGE_CONFLICT', `merging ${c.branch} into ${c.base} conflicts in ${conflicted.join(', ')}`, { details: { paths: conflicted } });
        }
        throw new BerthError('MERGE_CONFLICT', `merging ${c.branch} into ${c.base} failed: ${gitMessage(err)}`, { details: { paths: [] } });
      }
      const commit = (await git(['rev-parse', 'HEAD'], call)).trim();
      this.log.info({ branch: c.branch, base: c.base, strategy, commit }, 'Merged session branch');
      return { strategy, base, branch, commit, branchTip };
    });
  }

  /** Uncommitted changes of the main checkout (read through a shadow). */
  async mainDirty(projectRepo: string): Promise<string[]> {
    const d = await this.inspect.dirty({ key: `main-${hashKey(projectRepo)}`, workTree: projectRepo, branch: null, base: null, baseSha: null }, projectRepo);
    return d.map((x) => x.path);
  }

  /** Merge commits are the project owner's, as git would sign them; berth's own name only when they set none. */
  private async identity(repo: string): Promise<string[]> {
    const who = await ownerIdentity(repo);
    return [`user.name=${who.name ?? 'berth'}`, `user.email=${who.email ?? 'berth@localhost'}`];
  }
}

/** A squash's message: the session's commit subjects, oldest first (capped), under a title naming the branch. */
async function squashMessage(call: GitCall, branch: string, ref: string): Promise<string> {
  const subjects = (await git(['log', '--reverse', '--no-merges', '--format=%s', '-n', '200', `HEAD..${ref}`], call).catch(() => ''))
    .split('\n')
    .map((l) => l.replace(/[\u0000-\u001f\u007f]/g, ' ').trim().slice(0, 200))
    .filter(Boolean);
  return [`Squashed session branch ${branch}`, '', ...subjects.map((x) => `* ${x}`)].join('\n').trim();
}
