import { lstat, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { BerthError, type SessionDiff, type SessionStatus } from '@berth/client-sdk/protocol';
import { GitError, git, gitCapped, type GitCall } from './git.js';
import { gitMessage, revParse } from './project-git.js';
import { readHead, readRef, type CheckoutRef, type ShadowEnv, type Shadows } from './shadow.js';

const MAX_DIFF = 1024 * 1024;

/**
 * Reading a session's checkout: status, diff, and the snapshot a removal saves. Every git here runs
 * in the session's shadow (shadow.ts), never as the checkout's own repository.
 */
export class Inspector {
  constructor(private readonly shadows: Shadows) {}

  async dirty(c: CheckoutRef, projectRepo: string): Promise<{ path: string; status: string }[]> {
    return this.shadows.use(c, projectRepo, (s) => this.statusOf(s));
  }

  async statusOf(s: { env: Record<string, string>; gitDir: string }): Promise<{ path: string; status: string }[]> {
    // The index is the shadow's own: git may write its refreshed stat data back (optional locks on).
    const out = await git(['status', '--porcelain=v1', '-z', '--untracked-files=all', '--ignore-submodules=all', '--no-renames'], {
      cwd: s.gitDir,
      env: { ...s.env, GIT_OPTIONAL_LOCKS: '1' },
    });
    return parsePorcelain(out);
  }

  async status(c: CheckoutRef, projectRepo: string): Promise<SessionStatus> {
    return gitFailure(this.shadows.use(c, projectRepo, (s) => this.statusIn(c, projectRepo, s)));
  }

  private async statusIn(c: CheckoutRef, projectRepo: string, s: ShadowEnv): Promise<SessionStatus> {
    const { env, head, gitDir } = s;
    const dirty = await this.statusOf(s);
    const branch = c.branch ?? (await readHead(c.workTree)).ref?.replace(/^refs\/heads\//, '') ?? null;
    const tip = c.branch ? await readRef(c.workTree, `refs/heads/${c.branch}`) : head;
    const baseSha = c.base ? await revParse(projectRepo, `refs/heads/${c.base}`) : null;
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

  /**
   * The session's changes against where its branch left the base, uncommitted ones and new files
   * included. New files are marked intent-to-add, so git reads them from the work tree as it diffs
   * and nothing is written into berth's object stores; output stops at the cap.
   */
  async diff(c: CheckoutRef, projectRepo: string, stat: boolean): Promise<SessionDiff> {
    if (!c.branch || !c.base || !c.baseSha) throw new BerthError('NO_CHECKOUT', 'this session has no branch of its own');
    const own = { branch: c.branch, base: c.base, baseSha: c.baseSha };
    return gitFailure(this.shadows.use(c, projectRepo, (s) => this.diffIn(c, own, projectRepo, s, stat)));
  }

  private async diffIn(c: CheckoutRef, own: { branch: string; base: string; baseSha: string }, projectRepo: string, s: ShadowEnv, stat: boolean): Promise<SessionDiff> {
    const env = await this.shadows.scratchIndex(s, 'diff');
    try {
      await git(['add', '--intent-to-add', '--ignore-errors', '--', '.'], { cwd: s.gitDir, env });
      await dropForeignGitlinks({ cwd: s.gitDir, env }, s.head);
      const baseSha = (await revParse(projectRepo, `refs/heads/${own.base}`)) ?? own.baseSha;
      const tip = (await readRef(c.workTree, `refs/heads/${own.branch}`)) ?? own.baseSha;
      const mergeBase = (await git(['merge-base', baseSha, tip], { cwd: s.gitDir, env }).catch(() => baseSha)).trim();
      // No --binary: a binary (or over 32 MiB) file shows as "Binary files differ" instead of git
      // building its whole encoded patch in memory before the first byte comes out.
      const args = ['diff', '--no-color', '--no-ext-diff', '--no-textconv', '--ignore-submodules=all', ...(stat ? ['--stat'] : []), mergeBase, '--'];
      let skipped: string[] = [];
      let res: { out: Buffer; truncated: boolean };
      try {
        res = await gitCapped([...args, '.'], { cwd: s.gitDir, env }, MAX_DIFF);
      } catch {
        // A path git cannot read (a FIFO, a device, a file swapped mid-read) fails the whole diff:
        // leave out what is not a regular file or a link, and say so, rather than hide every change.
        for (const d of await this.statusOf(s)) {
          const st = await lstat(join(c.workTree, d.path)).catch(() => null);
          if (st && !st.isFile() && !st.isSymbolicLink()) skipped.push(d.path);
        }
        skipped = skipped.slice(0, 1000);
        try {
          res = await gitCapped([...args, '.', ...skipped.map((p) => `:(exclude,literal)${p}`)], { cwd: s.gitDir, env }, MAX_DIFF);
        } catch (err) {
          throw new BerthError('DIFF_FAILED', `git could not diff the session's checkout: ${gitMessage(err)}`, { details: { skipped } });
        }
      }
      const { out, truncated } = res;
      let text = skipped.map((p) => `# berth: left out ${JSON.stringify(p)}: not a regular file\n`).join('') + out.toString('utf8');
      // Never end in the middle of a character.
      if (truncated) text = text.replace(/\uFFFD+$/, '');
      return { base: own.base, branch: own.branch, diff: text, truncated };
    } finally {
      await rm(env.GIT_INDEX_FILE!, { force: true });
    }
  }

  /** Everything in the work tree (tracked, changed and untracked) as a tree object in the shadow. */
  snapshotTree(c: CheckoutRef, projectRepo: string): Promise<{ tree: string; head: string | null; gitDir: string }> {
    return this.shadows.use(c, projectRepo, async (s) => {
      const env = await this.shadows.scratchIndex(s, 'snapshot');
      try {
        await git(['add', '--all', '--ignore-errors', '--', '.'], { cwd: s.gitDir, env });
        await dropForeignGitlinks({ cwd: s.gitDir, env }, s.head);
        return { tree: (await git(['write-tree'], { cwd: s.gitDir, env })).trim(), head: s.head, gitDir: s.gitDir };
      } finally {
        await rm(env.GIT_INDEX_FILE!, { force: true });
      }
    });
  }
}

/** A git that failed (killed at its deadline, a path it could not read) as a coded error; BerthErrors pass. */
async function gitFailure<T>(p: Promise<T>): Promise<T> {
  try {
    return await p;
  } catch (err) {
    if (err instanceof GitError) throw new BerthError('GIT_FAILED', `git could not read the session's checkout: ${gitMessage(err)}`, { details: { exitCode: err.exitCode } });
    throw err;
  }
}

/**
 * `git add` records a nested repository as a gitlink holding that repository's HEAD, which git reads
 * by following the nested `.git` (a gitfile or a link the agent wrote) wherever it points: another
 * project's commit id would end up in berth's index, its diff and its saved wip commit. Gitlinks are
 * kept only as the agent's own commit has them; every other one is dropped from the index.
 */
async function dropForeignGitlinks(call: GitCall, head: string | null): Promise<void> {
  const links = (out: string) => {
    const m = new Map<string, string>();
    for (const rec of out.split('\0')) {
      const x = /^160000 (?:commit )?([0-9a-f]{40,64})(?: 0)?\t(.*)$/s.exec(rec);
      if (x) m.set(x[2]!, x[1]!);
    }
    return m;
  };
  const staged = links(await git(['ls-files', '--stage', '-z'], call));
  if (!staged.size) return;
  const own = head ? links(await git(['ls-tree', '-r', '-z', head], call)) : new Map<string, string>();
  const fix: string[] = [];
  for (const [path, sha] of staged) {
    const mine = own.get(path);
    if (mine === sha) continue;
    fix.push(mine ? `160000 ${mine}\t${path}` : `0 ${'0'.repeat(sha.length)}\t${path}`);
  }
  if (fix.length) await git(['update-index', '-z', '--index-info'], { ...call, input: `${fix.join('\0')}\0` });
}

function parsePorcelain(out: string): { path: string; status: string }[] {
  return out
    .split('\0')
    .filter(Boolean)
    .map((e) => ({ status: e.slice(0, 2).trim(), path: e.slice(3) }));
}
