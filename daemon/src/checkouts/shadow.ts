import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { copyFile, lstat, mkdir, open, readFile, readdir, rename, rm, writeFile, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { BerthError } from '@berth/client-sdk/protocol';
import { git } from './git.js';
import { KeyedMutex } from '../shared/mutex.js';
import { assertProjectPath, isRealDir, safeOpen, safeRead } from './safe-fs.js';

export const SHA = /^[0-9a-f]{40}(?:[0-9a-f]{24})?$/;
const REF = /^refs\/[A-Za-z0-9._/-]+$/;
const LOOSE_DIR = /^[0-9a-f]{2}$/;
const LOOSE_FILE = /^[0-9a-f]{38}(?:[0-9a-f]{24})?$/;
const PACK_FILE = /^pack-[0-9a-f]{40}(?:[0-9a-f]{24})?\.(?:pack|idx)$/;

/**
 * What berthd copies out of an agent's object store, at most. An agent's own objects are its
 * commits since the session began (its `git gc` packs only those: the project's objects are borrowed
 * through alternates), so these are far above real use and still bound berthd's disk.
 */
export const MIRROR_LIMITS = {
  looseObjectBytes: 256 * 1024 ** 2,
  packBytes: 2 * 1024 ** 3,
  totalBytes: 4 * 1024 ** 3,
  files: 200_000,
};

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

export interface ShadowEnv {
  env: Record<string, string>;
  head: string | null;
  gitDir: string;
}

/**
 * The shadow git dir: how berthd looks at a work tree an agent controls without running git *as*
 * that repository. `$BERTH_HOME/shadow/<key>` has berthd's own config, its own index and HEAD, and as
 * object stores only (1) a mirror of the agent's objects that berthd copied itself, regular files
 * only, read by descriptor without following links and under size caps, and (2) the project's
 * object store. git is pointed at the agent's work tree with GIT_WORK_TREE; nothing in the clone's
 * `.git` (config, hooks, index, alternates, info/, commit-graph, links in objects/) is ever read by git.
 *
 * The index is rebuilt from the agent's HEAD commit whenever that moves (git checks every path of a
 * tree it loads: no `..`, no `.git`, nothing absolute) and kept fresh by git's own refresh; at
 * creation it is seeded from the clone's index, which berthd's git wrote before any agent ran.
 */
export class Shadows {
  /** One user of a shadow at a time: its index and HEAD are rewritten as it is prepared. */
  private readonly locks = new KeyedMutex();
  /**
   * One copier of a mirror at a time, apart from the shadow's lock: an import refreshes the mirror
   * without waiting for a status or diff that is stuck in the agent's work tree (a FIFO it made)
   * while holding the shadow, and so never holds the project up behind one session's trap.
   */
  private readonly mirrorLocks = new KeyedMutex();
  /** Agent files that failed verification (by mirror, name, size, mtime, inode), oldest first. */
  private readonly rejected = new Set<string>();

  private reject(key: string): void {
    this.rejected.add(key);
    if (this.rejected.size > 10_000) this.rejected.delete(this.rejected.values().next().value!);
  }

  constructor(private readonly home: string) {}

  /** Prepares the shadow of `c` and runs `fn` with it, holding it for the duration. */
  use<T>(c: CheckoutRef, projectRepo: string, fn: (s: ShadowEnv) => Promise<T>): Promise<T> {
    return this.locks.run(c.key, async () => fn(await this.prepare(c, projectRepo)));
  }

  /** Brings only the mirror of the agent's objects up to date (what an import needs). */
  refreshMirror(c: CheckoutRef, projectRepo: string): Promise<void> {
    return this.mirrorLocks.run(c.key, () => this.mirror(c.workTree, join(this.dir(c.key), 'agent-objects'), join(projectRepo, '.git', 'objects')));
  }

  dir(key: string): string {
    return join(this.home, 'shadow', key.replace(/[^A-Za-z0-9_-]/g, '_'));
  }

  private async init(g: string): Promise<void> {
    if (existsSync(join(g, 'HEAD'))) return;
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
        '\tbigFileThreshold = 32m',
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

  /** Seeds the shadow of a checkout berthd just made (before any agent ran in it) with its index. */
  async seed(c: CheckoutRef, projectRepo: string, head: string): Promise<void> {
    const g = this.dir(c.key);
    await this.init(g);
    await this.alternates(c, projectRepo, g);
    await git(['update-ref', '--no-deref', 'HEAD', head], { cwd: g, env: { GIT_DIR: g } });
    const index = await safeRead(c.workTree, '.git/index', 512 * 1024 * 1024);
    if (index) await writeFile(join(g, 'index'), index);
    await writeFile(join(g, 'berth-head'), head);
  }

  private async alternates(c: CheckoutRef, projectRepo: string, g: string): Promise<void> {
    // The project's store first: for an id both have, git reads the project's object.
    const alternates = [join(projectRepo, '.git', 'objects')];
    if (c.workTree !== projectRepo) alternates.push(join(g, 'agent-objects'));
    await mkdir(join(g, 'objects', 'info'), { recursive: true });
    await mkdir(join(g, 'agent-objects'), { recursive: true });
    await writeFile(join(g, 'objects', 'info', 'alternates'), `${alternates.join('\n')}\n`);
  }

  /**
   * Brings the shadow up to date with the work tree's HEAD and objects, and returns the environment
   * that makes git look at the work tree through it.
   */
  private async prepare(c: CheckoutRef, projectRepo: string): Promise<ShadowEnv> {
    const g = this.dir(c.key);
    await assertProjectPath(projectRepo);
    await this.init(g);
    if (c.workTree !== projectRepo) {
      if (!(await isRealDir(c.workTree, '.git/objects'))) {
        throw new BerthError('CHECKOUT_FAILED', `the session's git directory at ${c.workTree}/.git was replaced or linked elsewhere; berth will not read it`);
      }
      await this.mirrorLocks.run(c.key, () => this.mirror(c.workTree, join(g, 'agent-objects'), join(projectRepo, '.git', 'objects')));
    }
    await this.alternates(c, projectRepo, g);
    if (c.workTree === projectRepo) {
      // The main checkout's own excludes are the user's (no agent can write the project's .git): what
      // they keep out of git is not "uncommitted changes" that would block a merge.
      const exclude = await safeRead(projectRepo, '.git/info/exclude', 1024 * 1024);
      await mkdir(join(g, 'info'), { recursive: true });
      await writeFile(join(g, 'info', 'exclude'), exclude ?? '');
    }
    const { sha } = await readHead(c.workTree);
    const env = { GIT_DIR: g, GIT_WORK_TREE: c.workTree, GIT_INDEX_FILE: join(g, 'index') };
    const had = (await readFile(join(g, 'berth-head'), 'utf8').catch(() => '')).trim();
    if (sha && sha !== had) {
      // `reset --mixed`: HEAD and the index follow the agent's commit; entries that did not change
      // keep their stat data, so only changed files are hashed again.
      try {
        await git(['reset', '--quiet', '--mixed', '--no-refresh', sha], { cwd: g, env });
      } catch (err) {
        throw new BerthError('CHECKOUT_FAILED', `cannot read the session's commit ${sha}: ${String((err as Error).message).split('\n').slice(-3).join(' ').slice(0, 300)}`);
      }
      await writeFile(join(g, 'berth-head'), sha);
    } else if (!sha && had) {
      await rm(join(g, 'index'), { force: true });
      await rm(join(g, 'berth-head'), { force: true });
    }
    return { env, head: sha, gitDir: g };
  }

  /**
   * Copies the agent's loose objects and packs into `dest`, by name, each once; files gone from the
   * agent's store are dropped from the mirror. Anything that is not a regular file reached without a
   * link (FIFOs, devices, links to other projects' objects) is skipped. `objects/info` (alternates,
   * commit-graph) is never read.
   */
  async mirror(workTree: string, dest: string, projectObjects?: string): Promise<void> {
    const src = join(workTree, '.git', 'objects');
    const want = new Map<string, string>(); // mirror-relative path -> clone-relative path
    let dirs: string[];
    try {
      dirs = await readdir(src);
    } catch {
      return;
    }
    for (const d of dirs) {
      const sub = d === 'pack' ? PACK_FILE : LOOSE_DIR.test(d) ? LOOSE_FILE : null;
      if (!sub || !(await isRealDir(src, d))) continue;
      let files: string[];
      try {
        files = await readdir(join(src, d));
      } catch {
        continue;
      }
      for (const f of files) {
        // The agent's pack indexes are never taken: berth indexes each pack itself (below).
        if (!sub.test(f) || f.endsWith('.idx')) continue;
        want.set(`${d}/${f}`, `.git/objects/${d}/${f}`);
        if (want.size > MIRROR_LIMITS.files) throw new BerthError('CHECKOUT_FAILED', `the session's object store has more than ${MIRROR_LIMITS.files} files; berth will not copy it`);
      }
    }
    const have = new Set<string>();
    let total = 0;
    for (const d of await readdir(dest).catch(() => [] as string[])) {
      for (const f of await readdir(join(dest, d)).catch(() => [] as string[])) {
        const rel = `${d}/${f}`;
        const pack = rel.replace(/\.idx$/, '.pack');
        const wanted = want.has(rel) || (rel.endsWith('.idx') && want.has(pack) && existsSync(join(dest, pack)));
        if (!wanted) await rm(join(dest, rel), { force: true });
        else {
          have.add(rel);
          total += (await lstat(join(dest, rel))).size;
        }
      }
    }
    let todo = [...want.keys()].filter((r) => !have.has(r) || (r.endsWith('.pack') && !existsSync(join(dest, r.replace(/\.pack$/, '.idx')))));
    const loose = todo.filter((r) => !r.startsWith('pack/')).map((r) => r.replace('/', ''));
    if (projectObjects && loose.length) {
      const known = await this.inStore(projectObjects, loose);
      todo = todo.filter((r) => !known.has(r.replace('/', '')));
    }
    for (const rel of todo) {
      const fh = await safeOpen(workTree, want.get(rel)!);
      if (!fh) continue;
      try {
        const st = await fh.stat();
        const size = st.size;
        // A sparse file costs the agent no disk and would cost berth all of it: only what the agent
        // really wrote is copied, and only what starts as a git object or pack would.
        if (st.blocks * 512 < size / 2 || !(await looksLike(fh, rel))) continue;
        // A file already found not to be what its name says is not hashed again until it changes.
        const seen = `${dest}\0${rel}\0${size}\0${st.mtimeMs}\0${st.ino}`;
        if (this.rejected.has(seen)) continue;
        const cap = rel.startsWith('pack/') ? MIRROR_LIMITS.packBytes : MIRROR_LIMITS.looseObjectBytes;
        if (size > cap || total + size > MIRROR_LIMITS.totalBytes) {
          throw new BerthError('CHECKOUT_FAILED', `the session's object ${rel} (${size} bytes) is over berth's limits (one ${cap} bytes, all ${MIRROR_LIMITS.totalBytes} bytes)`);
        }
        total += size;
        await mkdir(join(dest, rel.split('/')[0]!), { recursive: true });
        const tmp = join(dest, `${rel}.${process.pid}.tmp`);
        const out = await open(tmp, 'w', 0o600);
        try {
          const buf = Buffer.alloc(1024 * 1024);
          let pos = 0;
          while (pos < size) {
            const { bytesRead } = await fh.read(buf, 0, Math.min(buf.length, size - pos), pos);
            if (!bytesRead) break;
            await out.write(buf, 0, bytesRead);
            pos += bytesRead;
          }
        } finally {
          await out.close();
        }
        // An id must not stand for other content than the project's: a pack is indexed by git from
        // its content (the agent's .idx is never used), so it cannot claim an id it does not hold;
        // a loose object the project already has is not copied (above), and the project's store
        // comes first among the shadow's alternates, so its copy wins over any the agent planted.
        if (rel.endsWith('.pack')) {
          await rename(tmp, join(dest, rel));
          try {
            await git(['index-pack', join(dest, rel)], { cwd: dest });
          } catch {
            await rm(join(dest, rel), { force: true });
            await rm(join(dest, rel.replace(/\.pack$/, '.idx')), { force: true });
            this.reject(seen);
          }
        } else {
          await rename(tmp, join(dest, rel));
        }
      } finally {
        await fh.close();
      }
    }
  }

  /** Which of `ids` the object store `objects` (the project's own, no alternates) already holds. */
  private async inStore(objects: string, ids: string[]): Promise<Set<string>> {
    // A repository of berth's own (its config) looking only at `objects`.
    const probe = join(this.home, 'shadow', '.store-probe');
    if (!existsSync(join(probe, 'HEAD'))) await git(['init', '--quiet', '--bare', probe], { cwd: this.home });
    const out = await git(['cat-file', '--batch-check=%(objectname)'], {
      cwd: probe,
      env: { GIT_DIR: probe, GIT_OBJECT_DIRECTORY: objects, GIT_ALTERNATE_OBJECT_DIRECTORIES: '' },
      input: `${ids.join('\n')}\n`,
    });
    return new Set(out.split('\n').filter((l) => SHA.test(l)));
  }

  async drop(key: string): Promise<void> {
    await rm(this.dir(key), { recursive: true, force: true });
  }

  /** A copy of the shadow's index to work on, removed by the caller. */
  async scratchIndex(s: ShadowEnv, name: string): Promise<Record<string, string>> {
    const tmp = `${s.env.GIT_INDEX_FILE}.${name}`;
    if (existsSync(s.env.GIT_INDEX_FILE!)) await copyFile(s.env.GIT_INDEX_FILE!, tmp);
    else await rm(tmp, { force: true });
    return { ...s.env, GIT_INDEX_FILE: tmp };
  }
}

/** Loose objects are zlib streams; packs start `PACK`, pack indexes `\377tOc` (v2+). */
async function looksLike(fh: FileHandle, rel: string): Promise<boolean> {
  const head = Buffer.alloc(4);
  const { bytesRead } = await fh.read(head, 0, 4, 0);
  if (bytesRead < 2) return false;
  if (rel.endsWith('.pack')) return head.toString('latin1') === 'PACK';
  if (rel.endsWith('.idx')) return head.equals(Buffer.from([0xff, 0x74, 0x4f, 0x63]));
  return head[0] === 0x78 && ((head[0]! << 8) | head[1]!) % 31 === 0;
}

/** HEAD of an agent-controlled work tree, read from files without following links. */
export async function readHead(workTree: string): Promise<{ ref: string | null; sha: string | null }> {
  const head = (await safeRead(workTree, '.git/HEAD', 4096))?.toString('utf8').trim();
  if (!head) return { ref: null, sha: null };
  if (SHA.test(head)) return { ref: null, sha: head };
  const m = /^ref: (refs\/[^\s]+)$/.exec(head);
  if (!m || !REF.test(m[1]!) || m[1]!.includes('..')) return { ref: null, sha: null };
  return { ref: m[1]!, sha: await readRef(workTree, m[1]!) };
}

/** A ref of an agent-controlled work tree: its loose file, else its line in packed-refs. */
export async function readRef(workTree: string, ref: string): Promise<string | null> {
  if (!REF.test(ref) || ref.includes('..')) return null;
  const loose = (await safeRead(workTree, `.git/${ref}`, 4096))?.toString('utf8').trim();
  if (loose && SHA.test(loose)) return loose;
  // Found by searching the bytes for this one ref's line: a packed-refs of millions of lines is
  // never split into strings.
  const packed = await safeRead(workTree, '.git/packed-refs', 64 * 1024 * 1024);
  if (!packed) return null;
  const needle = Buffer.from(` ${ref}\n`);
  for (let at = packed.indexOf(needle); at >= 0; at = packed.indexOf(needle, at + 1)) {
    const start = packed.lastIndexOf(0x0a, at - 1) + 1;
    const sha = packed.subarray(start, at).toString('latin1');
    if (SHA.test(sha)) return sha;
  }
  return null;
}

export function hashKey(s: string): string {
  return createHash('sha256').update(s).digest('hex').slice(0, 16);
}
