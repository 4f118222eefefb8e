import { execFile } from 'node:child_process';
import { existsSync, realpathSync } from 'node:fs';
import { chmod, lstat, mkdir, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { BerthError, type MergeResult, type Project, type SessionDiff, type SessionStatus } from '@berth/client-sdk/protocol';
import type { Logger } from '../log.js';
import { GitError, git, gitCapped, gitPipe, type GitCall } from './git.js';
import { untrackedInTheWay } from './merge-guard.js';
import { KeyedMutex } from '../shared/mutex.js';
import { assertProjectPath, isRealDir, safeRead } from './safe-fs.js';
import { SHA, Shadows, hashKey, readHead, readRef, type CheckoutRef, type ShadowEnv } from './shadow.js';

export type { CheckoutRef } from './shadow.js';

const run = promisify(execFile);
const MAX_DIFF = 1024 * 1024;

export interface NewCheckout {
  dir: string;
  branch: string;
  base: string;
  baseSha: string;
  /** The directory's identity, recorded so a later removal can prove it is the one berth made. */
  identity: DirIdentity;
}

export interface DirIdentity {
  dev: number;
  ino: number;
}

export interface ImportItem {
  ref: CheckoutRef & { name: string };
  /** The tip to import, read from the clone. */
  tip: string;
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
 * berthd never runs git *as* a repository an agent can write: see shadow.ts. Git that runs in the
 * project itself (imports, merges, branch bookkeeping) runs as the project's owner when berthd is
 * root, so whatever the owner's own configuration runs, it runs with the owner's rights, not root's.
 */
export class CheckoutManager {
  private readonly locks = new KeyedMutex();
  readonly shadows: Shadows;
  readonly root: string;

  constructor(
    private readonly home: string,
    private readonly log: Logger,
  ) {
    this.shadows = new Shadows(home);
    // Checkout paths are compared with their real paths (mount sources are checked on every use).
    this.root = join(existsSync(home) ? realpathSync(home) : home, 'checkouts');
  }

  /** Serialises git writes per repository (parallel `clone`/`fetch`/`update-ref` race on locks). */
  withRepo<T>(repo: string, fn: () => Promise<T>): Promise<T> {
    return this.locks.run(repo, fn);
  }

  /** Where the checkout of session `name` of `project` lives (known before it exists). */
  checkoutDir(project: string, name: string): string {
    return join(this.root, project, name);
  }

  // ---- git in the project ------------------------------------------------------------------------

  /**
   * How git runs in the project: as its owner when berthd is root (the owner's config, filters and
   * merge drivers then run with the owner's rights, which they have anyway); as berthd when berthd
   * is the owner. A project owned by another user while berthd is not root is refused, as git itself
   * refuses it (`safe.directory`).
   */
  async projectCall(repo: string, extra: Omit<GitCall, 'cwd'> = {}): Promise<GitCall> {
    await assertProjectPath(repo);
    const st = await stat(repo).catch(() => null);
    if (!st) throw new BerthError('PATH_NOT_FOUND', `the project directory ${repo} is gone`, { details: { path: repo } });
    const me = process.getuid?.() ?? st.uid;
    if (me === 0 && st.uid !== 0) return { ...extra, cwd: repo, as: { uid: st.uid, gid: st.gid } };
    if (me !== st.uid && me !== 0) {
      throw new BerthError('CHECKOUT_FAILED', `${repo} belongs to uid ${st.uid}, and berthd runs as uid ${me}: git in it would run that user's configuration as berthd`, {
        hint: 'Run berthd as the project owner (the user unit), or as root (the system unit), which runs git in projects as their owners.',
        details: { path: repo },
      });
    }
    return { ...extra, cwd: repo };
  }

  private async pgit(repo: string, args: string[], extra: Omit<GitCall, 'cwd'> = {}): Promise<string> {
    return git(args, await this.projectCall(repo, extra));
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
    for (const line of (await this.pgit(project.path, ['for-each-ref', '--format=%(objectname) %(refname)', 'refs/remotes/origin/'])).split('\n')) {
      const [sha, ref] = line.split(' ');
      if (sha && ref) remote.set(ref, sha);
    }
    const updates = [...branches].filter(([b, sha]) => remote.get(`refs/remotes/origin/${b}`) !== sha).map(([b, sha]) => ({ name: `refs/remotes/origin/${b}`, sha }));
    const deletes = [...remote.keys()].filter((r) => r !== 'refs/remotes/origin/HEAD' && !branches.has(r.slice('refs/remotes/origin/'.length)));
    await this.importMany(project.path, [], updates, [join(mirror, 'objects')], deletes, true);
    const current = await this.currentBranch(project.path);
    const base = project.branch ?? current;
    if (!base || current !== base) return;
    if ((await this.mainDirty(project.path)).length) return;
    await this.pgit(project.path, ['merge', '--ff-only', '--quiet', '--no-overwrite-ignore', `refs/remotes/origin/${base}`]).catch(() => {});
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
      const sha = (await this.pgit(repo, ['rev-parse', '-q', '--verify', `${ref}^{commit}`])).trim();
      return SHA.test(sha) ? sha : null;
    } catch {
      return null;
    }
  }

  private async isAncestor(repo: string, a: string, b: string): Promise<boolean> {
    return this.pgit(repo, ['merge-base', '--is-ancestor', a, b]).then(
      () => true,
      () => false,
    );
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
  async create(project: Project, name: string, meta: { agent: string; owner: { uid: number; gid: number }; key: string; onMade?: (identity: DirIdentity) => void }): Promise<NewCheckout> {
    const made = await this.withRepo(project.path, async () => {
      const parent = await this.projectRoot(project.name);
      if (project.gitUrl) await this.refresh(project);
      const base = project.branch ?? (await this.currentBranch(project.path));
      if (!base) {
        throw new BerthError('CHECKOUT_FAILED', `the main checkout of ${project.name} is on a detached HEAD, so there is no base branch`, {
          hint: 'Check out a branch in the project (`git switch main`), then start the session again.',
        });
      }
      const baseSha = await this.revParse(project.path, `refs/heads/${base}`);
      if (!baseSha) throw new BerthError('CHECKOUT_FAILED', `base branch ${base} of ${project.name} has no commit yet`, { hint: 'Make a first commit in the project.' });
      const dir = join(parent, name);
      if (existsSync(dir)) {
        throw new BerthError('CHECKOUT_FAILED', `${dir} already exists (kept from an earlier session?)`, {
          hint: 'Look at it, save what you need, remove it, and start again; or choose another --name.',
        });
      }
      const branch = `berth/${name}`;
      // A branch of that name kept from an earlier session is never moved off work the base lacks.
      const earlier = await this.revParse(project.path, `refs/heads/${branch}`);
      if (earlier && earlier !== baseSha && !(await this.isAncestor(project.path, earlier, baseSha))) {
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
        await git(['checkout', '--quiet', '-b', branch, baseSha], { cwd: dir, as: owner });
        // The clone's remote would name a host path the container cannot reach: drop it, and the
        // tracking branch section with it, straight from the config file git just wrote.
        const cfg = join(dir, '.git', 'config');
        const text = await readFile(cfg, 'utf8');
        await writeFile(cfg, text.replace(/^\[(remote "origin"|branch "[^"]*")\][^[]*/gm, ''));
        // Every session shows in `git branch` of the project from its start.
        await this.pgit(project.path, ['update-ref', `refs/heads/${branch}`, baseSha]);
      } catch (err) {
        await this.removeDir(dir, identity).catch(() => {});
        throw new BerthError('CHECKOUT_FAILED', `cannot make the checkout for ${name}: ${gitMessage(err)}`, {
          hint: owner ? `The project's owner (uid ${owner.uid}) must be able to read ${project.path}.` : undefined,
        });
      }
      this.log.info({ project: project.name, dir, branch, base, baseSha }, 'Created session checkout');
      return { dir, branch, base, baseSha, identity };
    });
    // The shadow is the session's own: seeding it needs no hold on the project (20 starts at once
    // queue only for what touches the project).
    try {
      await this.shadows.seed({ key: meta.key, workTree: made.dir, branch: made.branch, base: made.base, baseSha: made.baseSha }, project.path, made.baseSha);
    } catch (err) {
      await this.removeDir(made.dir, made.identity).catch(() => {});
      throw new BerthError('CHECKOUT_FAILED', `cannot prepare berth's view of the checkout for ${name}: ${gitMessage(err)}`);
    }
    return made;
  }

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

  // ---- inspection -----------------------------------------------------------------------------

  async dirty(c: CheckoutRef, projectRepo: string): Promise<{ path: string; status: string }[]> {
    return this.shadows.use(c, projectRepo, (s) => this.statusOf(s));
  }

  private async statusOf(s: { env: Record<string, string>; gitDir: string }): Promise<{ path: string; status: string }[]> {
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
      const baseSha = (await this.revParse(projectRepo, `refs/heads/${own.base}`)) ?? own.baseSha;
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
  private snapshotTree(c: CheckoutRef, projectRepo: string): Promise<{ tree: string; head: string | null; gitDir: string }> {
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

  // ---- moving work into the project --------------------------------------------------------------

  /** The tips of `refs/heads/berth/*` in the project. */
  async importedTips(projectRepo: string): Promise<Map<string, string>> {
    const out = await this.pgit(projectRepo, ['for-each-ref', '--format=%(objectname) %(refname)', 'refs/heads/berth/']);
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
    const have = await this.pgit(projectRepo, ['for-each-ref', '--format=%(objectname)', 'refs/heads/']);
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
    const project = await this.projectCall(projectRepo);
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
      const have = await this.revParse(projectRepo, `refs/heads/${c.branch}`);
      if (have === tip) return tip;
      if (c.workTree !== projectRepo) await this.shadows.refreshMirror(c, projectRepo);
      await this.importMany(projectRepo, [{ ref: { ...c, name: c.branch!.slice('berth/'.length) }, tip }], []);
      this.log.debug({ branch: c.branch, tip }, 'Imported session commits');
      return tip;
    });
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
      const call = await this.projectCall(projectRepo, { config: who });
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
      return { strategy, base, branch, commit };
    });
  }

  /** Uncommitted changes of the main checkout (read through a shadow). */
  async mainDirty(projectRepo: string): Promise<string[]> {
    const d = await this.dirty({ key: `main-${hashKey(projectRepo)}`, workTree: projectRepo, branch: null, base: null, baseSha: null }, projectRepo);
    return d.map((x) => x.path);
  }

  private async identity(repo: string): Promise<string[]> {
    const email = await this.pgit(repo, ['config', '--get', 'user.email']).catch(() => '');
    return email.trim() ? [] : ['user.name=berth', 'user.email=berth@localhost'];
  }

  /**
   * Removes a session checkout without losing work: uncommitted changes (only with `force`) are saved
   * as a commit on `refs/berth/wip/<name>`; the branch is deleted only when fully merged into the base,
   * else kept (or, with `deleteBranch`, moved to `refs/berth/archive/<name>`). Safe to run again after
   * an interruption: every step is idempotent, and the directory goes last.
   */
  async remove(
    c: CheckoutRef & { name: string },
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
      dirty = await this.dirty(c, projectRepo);
      await this.sync(c, projectRepo);
    } catch (err) {
      // A checkout berth cannot read safely is not deleted either: whatever is in it stays.
      if (err instanceof BerthError && err.code === 'CHECKOUT_FAILED') {
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
        const { tree, head, gitDir } = await this.snapshotTree(c, projectRepo);
        const parents = head ? ['-p', head] : [];
        const wip = (
          await git(['commit-tree', tree, ...parents, '-m', `berth: uncommitted work of session ${c.name}`], {
            cwd: gitDir,
            env: { GIT_DIR: gitDir },
            config: ['user.name=berth', 'user.email=berth@localhost'],
          })
        ).trim();
        // The wip commit's own objects live in the shadow's store: offer it to the import too.
        await this.importMany(projectRepo, [], [{ name: `refs/berth/wip/${c.name}`, sha: wip }], [join(gitDir, 'objects'), join(gitDir, 'agent-objects')]);
        kept.wip = `refs/berth/wip/${c.name}`;
        notes.push(`uncommitted changes saved as ${kept.wip}: \`git checkout -b rescue ${kept.wip}\` to get them back`);
      }
      if (c.branch && c.base) {
        const tip = await this.revParse(projectRepo, `refs/heads/${c.branch}`);
        if (tip) {
          const unmerged = Number((await this.pgit(projectRepo, ['rev-list', '--count', `refs/heads/${c.base}..${tip}`])).trim());
          if (unmerged === 0) {
            await this.pgit(projectRepo, ['update-ref', '-d', `refs/heads/${c.branch}`, tip]);
            notes.push(`branch ${c.branch} was fully merged into ${c.base} and is deleted`);
          } else if (opts.deleteBranch) {
            await this.pgit(projectRepo, ['update-ref', `refs/berth/archive/${c.name}`, tip]);
            await this.pgit(projectRepo, ['update-ref', '-d', `refs/heads/${c.branch}`, tip]);
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
      await this.sync({ key: `orphan-${hashKey(dir)}`, workTree: dir, branch: `berth/${name}`, base: null, baseSha: null }, repo).catch((err: unknown) =>
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
