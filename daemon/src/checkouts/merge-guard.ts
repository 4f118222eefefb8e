import { lstat, readdir } from 'node:fs/promises';
import { join } from 'node:path';

/** How many entries of a directory the merge would replace are looked at before refusing outright. */
const MAX_WALK = 100_000;

/**
 * Paths in the main checkout that a merge would overwrite or delete although git does not track
 * them: ignored files (`.env`, build output), untracked files, links standing where the merge writes.
 * git's own guard (`--no-overwrite-ignore`) is not honoured by the ort merge (git 2.39 replaces an
 * ignored `.env` on `merge --no-ff` and `--squash`), so berth checks before git touches anything.
 *
 * `changed`: every path that differs between the base's tree and the branch's (a superset of what
 * any strategy writes). `tracked`: the main checkout's index (clean, so equal to its HEAD). For each
 * changed path and each of its leading directories, whatever exists in the work tree must be safe
 * for git to write: a real directory (not a link to one) on the way, nothing or a tracked entry at
 * the end, or a directory whose every entry is tracked (the merge may turn it into a file). Links
 * are never followed. Returns the offending paths (empty: safe to merge).
 */
export async function untrackedInTheWay(workTree: string, changed: Iterable<string>, tracked: Iterable<string>): Promise<string[]> {
  const files = new Set<string>();
  const dirs = new Set<string>();
  for (const t of tracked) {
    files.add(t);
    for (let i = t.indexOf('/'); i > 0; i = t.indexOf('/', i + 1)) dirs.add(t.slice(0, i));
  }
  const found = new Set<string>();
  // Per leading path already looked at: go deeper (a real, tracked directory) or stop there. Never
  // go deeper than a stop: below a link, lstat would resolve through it.
  const verdict = new Map<string, 'deeper' | 'stop'>();
  for (const path of changed) {
    const parts = path.split('/');
    for (let n = 1; n <= parts.length; n++) {
      const q = parts.slice(0, n).join('/');
      const last = n === parts.length;
      let v = verdict.get(q);
      if (!v) {
        const st = await lstat(join(workTree, q)).catch(() => null);
        if (!st) v = 'stop'; // nothing there: git creates it
        else if (files.has(q)) v = 'stop'; // a tracked file or link: git replaces it, nothing is lost
        else if (st.isDirectory() && (dirs.has(q) || !last)) v = 'deeper'; // a real directory on the way: git writes inside it
        else {
          found.add(q);
          v = 'stop';
        }
        verdict.set(q, v);
      }
      if (v === 'stop') break;
      // A directory the merge replaces must hold nothing untracked.
      if (last) for (const u of await untrackedUnder(workTree, q, files)) found.add(u);
    }
  }
  return [...found].sort();
}

async function untrackedUnder(workTree: string, dir: string, tracked: Set<string>): Promise<string[]> {
  const out: string[] = [];
  let seen = 0;
  const walk = async (rel: string): Promise<void> => {
    for (const e of await readdir(join(workTree, rel), { withFileTypes: true })) {
      if (++seen > MAX_WALK) {
        out.push(`${dir}/… (more than ${MAX_WALK} entries)`);
        return;
      }
      const p = `${rel}/${e.name}`;
      if (tracked.has(p)) continue;
      if (e.isDirectory()) await walk(p);
      else out.push(p);
      if (out.length >= 20) return;
    }
  };
  await walk(dir);
  return out;
}
