import { constants } from 'node:fs';
import { lstat, open, readFile, readdir, readlink, realpath, type FileHandle } from 'node:fs/promises';
import { join, sep } from 'node:path';
import { BerthError } from '@berth/client-sdk/protocol';

/**
 * Reading inside a directory an agent controls, without ever following a link out of it. Every
 * path component is lstat'ed (no symlinks), the file is opened with O_NOFOLLOW (a link in the last
 * component fails) and O_NONBLOCK (a FIFO swapped in cannot block the open), and then, where the
 * kernel can say (Linux: /proc/self/fd), the path the descriptor really names must be the one asked
 * for, so a directory swapped for a link between the walk and the open is caught. Only regular
 * files are read, and never more than the cap.
 */
export async function safeOpen(root: string, rel: string): Promise<FileHandle | null> {
  const parts = rel.split('/').filter(Boolean);
  if (!parts.length || parts.some((p) => p === '..' || p === '.')) return null;
  let cur = root;
  for (let i = 0; i < parts.length; i++) {
    cur = join(cur, parts[i]!);
    let st;
    try {
      st = await lstat(cur);
    } catch {
      return null;
    }
    if (st.isSymbolicLink()) return null;
    if (i < parts.length - 1 && !st.isDirectory()) return null;
    if (i === parts.length - 1 && !st.isFile()) return null;
  }
  let fh: FileHandle;
  try {
    fh = await open(cur, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch {
    return null;
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new Error('not a regular file');
    if (process.platform === 'linux') {
      const real = await readlink(`/proc/self/fd/${fh.fd}`);
      if (real !== join(await realRoot(root), ...parts)) throw new Error('moved');
    }
    return fh;
  } catch {
    await fh.close();
    return null;
  }
}

const roots = new Map<string, string>();
/** The root's own real path (the root itself is berth's, e.g. the checkout directory it made). */
async function realRoot(root: string): Promise<string> {
  let r = roots.get(root);
  if (!r) {
    r = await realpath(root);
    if (roots.size > 1000) roots.clear();
    roots.set(root, r);
  }
  return r;
}

/** The whole file, or null when it is missing, not a regular file reached without links, or over `maxBytes`. */
export async function safeRead(root: string, rel: string, maxBytes = 1024 * 1024): Promise<Buffer | null> {
  const fh = await safeOpen(root, rel);
  if (!fh) return null;
  try {
    const size = (await fh.stat()).size;
    if (size > maxBytes) return null;
    // Read what is there up to the cap, whatever the file grows to meanwhile.
    const buf = Buffer.alloc(Math.min(size, maxBytes) + 1);
    let n = 0;
    for (;;) {
      const { bytesRead } = await fh.read(buf, n, buf.length - n, n);
      if (bytesRead === 0) break;
      n += bytesRead;
      if (n > maxBytes) return null;
      if (n === buf.length) break;
    }
    return buf.subarray(0, Math.min(n, size));
  } finally {
    await fh.close();
  }
}

/** True when `root/rel` is a real directory reached through real directories only. */
export async function isRealDir(root: string, rel: string): Promise<boolean> {
  let cur = root;
  for (const p of rel.split(sep).filter(Boolean)) {
    if (p === '..') return false;
    cur = join(cur, p);
    try {
      const st = await lstat(cur);
      if (st.isSymbolicLink() || !st.isDirectory()) return false;
    } catch {
      return false;
    }
  }
  return true;
}

/**
 * A project's repository must still be where `project add` found it: the recorded (real) path, no
 * link at any level, with a real `.git/objects` directory. Checked on every use, since whoever owns
 * the directory can swap it for a link to a repository outside PROJECTS_ROOT at any time.
 */
export async function assertProjectPath(path: string): Promise<void> {
  const real = await realpath(path).catch(() => null);
  if (real === null) {
    throw new BerthError('PATH_NOT_FOUND', `the project directory ${path} is gone`, {
      hint: 'Restore the repository at that path, or remove the project and add it again where it is now.',
      details: { path },
    });
  }
  if (real !== path || !(await isRealDir(path, '.git/objects'))) {
    throw new BerthError('PROJECT_PATH_CHANGED', `${path} (or its .git) is no longer the directory added as the project${real !== path ? `: it leads to ${real}` : ''}`, {
      details: { path, real },
    });
  }
  await assertOwnObjects(join(path, '.git', 'objects'));
}

/**
 * berthd's git reads a project's object store (as root, when it runs as root): that store must be
 * the project's own, with no `info/alternates` naming another store and no link in place of its
 * `pack/`, its fan-out directories or its packs, through which git would read another user's objects.
 * (A loose object file that is a link is not looked for: that would mean reading every file.)
 */
export async function assertOwnObjects(objects: string): Promise<void> {
  const refuse = (what: string) => {
    throw new BerthError('PROJECT_OBJECTS_LINKED', `${objects} ${what}; berth reads only a project's own objects`, { details: { path: objects } });
  };
  const alt = await lstat(join(objects, 'info', 'alternates')).catch(() => null);
  if (alt && (!alt.isFile() || alt.size > 0)) {
    const text = alt.isFile() ? await readFile(join(objects, 'info', 'alternates'), 'utf8').catch(() => 'x') : 'x';
    if (text.trim()) refuse('borrows objects from another store (objects/info/alternates)');
  }
  for (const e of await readdir(objects, { withFileTypes: true }).catch(() => [])) {
    if (e.isSymbolicLink()) refuse(`has a link at ${e.name}`);
  }
  for (const e of await readdir(join(objects, 'pack'), { withFileTypes: true }).catch(() => [])) {
    if (e.isSymbolicLink()) refuse(`has a link at pack/${e.name}`);
  }
}

/** `path` is its own real path (no link at any level): a mount source berth recorded, still in place. */
export async function assertRealPath(path: string): Promise<void> {
  const real = await realpath(path).catch(() => null);
  if (real !== path) {
    throw new BerthError('PROJECT_PATH_CHANGED', `${path} ${real === null ? 'is gone' : `now leads to ${real}`}; berth mounts only the paths it recorded`, {
      details: { path, real },
    });
  }
}
