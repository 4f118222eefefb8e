import { execFile } from 'node:child_process';
import { readFile, stat } from 'node:fs/promises';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { BerthError } from '@berth/client-sdk/protocol';
import { git, type GitCall } from './git.js';
import { assertProjectPath, safeRead } from './safe-fs.js';
import { SHA } from './shadow.js';

/** git in a project's own repository, and the small helpers every part of checkouts/ shares. */

export const run = promisify(execFile);

/**
 * How git runs in the project: as its owner when berthd is root (the owner's config, filters and
 * merge drivers then run with the owner's rights, which they have anyway); as berthd when berthd
 * is the owner. A project owned by another user while berthd is not root is refused, as git itself
 * refuses it (`safe.directory`).
 */
export async function projectCall(repo: string, extra: Omit<GitCall, 'cwd'> = {}): Promise<GitCall> {
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

/** git in the project, run as projectCall says. */
export async function pgit(repo: string, args: string[], extra: Omit<GitCall, 'cwd'> = {}): Promise<string> {
  return git(args, await projectCall(repo, extra));
}

/** The branch the main checkout has checked out (read from `.git/HEAD`; the project's own repository). */
export async function currentBranch(repo: string): Promise<string | null> {
  const head = (await safeRead(repo, '.git/HEAD', 4096))?.toString('utf8').trim() ?? '';
  const m = /^ref: refs\/heads\/(.+)$/.exec(head);
  return m && !m[1]!.includes('..') ? m[1]! : null;
}

/** The commit `ref` names in the project, or null. */
export async function revParse(repo: string, ref: string): Promise<string | null> {
  try {
    const sha = (await pgit(repo, ['rev-parse', '-q', '--verify', `${ref}^{commit}`])).trim();
    return SHA.test(sha) ? sha : null;
  } catch {
    return null;
  }
}

/** Whether commit `a` is an ancestor of `b` in the project. */
export async function isAncestor(repo: string, a: string, b: string): Promise<boolean> {
  return pgit(repo, ['merge-base', '--is-ancestor', a, b]).then(
    () => true,
    () => false,
  );
}

/** The home directory of `uid` from /etc/passwd (berthd's own as a fallback for itself), or null. */
export async function homeOf(uid: number, passwd = '/etc/passwd'): Promise<string | null> {
  const text = await readFile(passwd, 'utf8').catch(() => '');
  for (const line of text.split('\n')) {
    const f = line.split(':');
    if (f.length >= 7 && Number(f[2]) === uid && f[5]!.startsWith('/')) return f[5]!;
  }
  return uid === process.getuid?.() ? userInfo().homedir : null;
}

const clean = (v: string) => v.replace(/[\u0000-\u001f\u007f]/g, ' ').trim().slice(0, 200) || null;

/**
 * The identity git would give the project owner's commits: user.name and user.email as git resolves
 * them, from the repository's config, then the owner's ~/.gitconfig and ~/.config/git/config, then
 * /etc/gitconfig. Each file is read for those two keys only (`git config --file`, no includes, run as
 * the owner like any git in the project): berth's git reads no global configuration otherwise.
 */
export async function ownerIdentity(repo: string, home?: string | null): Promise<{ name: string | null; email: string | null }> {
  const owner = (await stat(repo)).uid;
  const dir = home === undefined ? await homeOf(owner) : home;
  const files = [...(dir ? [join(dir, '.gitconfig'), join(dir, '.config/git/config')] : []), '/etc/gitconfig'];
  const sources = [['--local'], ...files.map((f) => ['--file', f])];
  const get = async (key: string) => {
    for (const src of sources) {
      const v = clean(await pgit(repo, ['config', ...src, '--get', key]).catch(() => ''));
      if (v) return v;
    }
    return null;
  };
  return { name: await get('user.name'), email: await get('user.email') };
}

export function gitMessage(err: unknown): string {
  return String((err as Error)?.message ?? err)
    .split('\n')
    .filter((l) => l.trim())
    .slice(-3)
    .join(' ')
    .slice(0, 500);
}

export function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** Files the agent writes must belong to the project's owner: when berthd is root, hand the tree over. */
export async function chownTree(dir: string, owner: { uid: number; gid: number } | null | undefined, recursive = true): Promise<void> {
  if (!owner || process.getuid?.() !== 0 || owner.uid === 0) return;
  await run('chown', [...(recursive ? ['-R'] : []), '-h', `${owner.uid}:${owner.gid}`, dir]);
}
