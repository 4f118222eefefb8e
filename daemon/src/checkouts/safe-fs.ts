import { constants } from 'node:fs';
import { lstat, open } from 'node:fs/promises';
import { join, sep } from 'node:path';

/**
 * Reading files inside a directory an agent controls, without ever following a link out of it:
 * every path component is lstat'ed (no symlinks allowed), and the file is opened with O_NOFOLLOW.
 * Returns null when the file is missing, is not a regular file, or a component is a link.
 */
export async function safeRead(root: string, rel: string, maxBytes = 1024 * 1024): Promise<Buffer | null> {
  const parts = rel.split('/').filter(Boolean);
  if (parts.some((p) => p === '..' || p === '.')) return null;
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
  let fh;
  try {
    fh = await open(cur, constants.O_RDONLY | constants.O_NOFOLLOW);
  } catch {
    return null;
  }
  try {
    const st = await fh.stat();
    if (!st.isFile() || st.size > maxBytes) return null;
    const buf = Buffer.alloc(st.size);
    await fh.read(buf, 0, st.size, 0);
    return buf;
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
