import { lstat, readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { listSegments, segmentFile } from './format.js';

export interface RetentionLimits {
  /** Stored bytes kept per session (`logRetentionBytes`). */
  sessionBytes: number;
  /** Stored bytes kept for all sessions together (`logRetentionTotalBytes`). */
  totalBytes: number;
  /** A removed session's directory goes this many days after its removal (`logRetentionDays`). */
  days: number;
}

export interface PruneResult {
  removedDirs: number;
  removedBytes: number;
}

interface Seg {
  n: number;
  bytes: number;
  files: string[];
}

interface SessionDir {
  id: string;
  dir: string;
  removedAt: number | null;
  segs: Seg[];
  bytes: number;
}

/** Session directory names berth makes (session ids); anything else under logs/ is left alone. */
const SESSION_DIR_RE = /^[A-Za-z0-9_-]{1,64}$/;

/**
 * Size and age limits on `$BERTH_HOME/logs`. A live session's newest segment (the one being
 * written) is never deleted; a removed session's may be. Operations run one at a time.
 */
export class LogRetention {
  private chain: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly root: string,
    private readonly limits: RetentionLimits,
    private readonly log: Logger,
  ) {}

  /**
   * The maintenance pass: removed sessions older than `days` go whole, then every session is cut
   * to `sessionBytes`, then all of them to `totalBytes`.
   */
  pruneLogs(now: Date): Promise<PruneResult> {
    return this.serial(async () => {
      const result: PruneResult = { removedDirs: 0, removedBytes: 0 };
      const dirs = await this.scan();
      const keep: SessionDir[] = [];
      for (const d of dirs) {
        if (d.removedAt !== null && now.getTime() - d.removedAt >= this.limits.days * 86_400_000) {
          await rm(d.dir, { recursive: true, force: true });
          result.removedDirs++;
          result.removedBytes += d.bytes;
          this.log.info({ sessionId: d.id, bytes: d.bytes }, 'Removed stored output of a session removed long ago');
        } else keep.push(d);
      }
      for (const d of keep) result.removedBytes += await this.cutSession(d);
      const total = await this.cutTotal(keep);
      result.removedBytes += total.removedBytes;
      result.removedDirs += total.removedDirs;
      return result;
    });
  }

  /** The size checks after one session rotated: its own cap, then the global one. */
  afterRotation(id: string): Promise<number> {
    return this.serial(async () => {
      const d = await this.read(id);
      let removed = d ? await this.cutSession(d) : 0;
      const total = await this.cutTotal(await this.scan());
      removed += total.removedBytes;
      return removed;
    });
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.chain.then(fn, fn);
    this.chain = next.catch(() => {});
    return next;
  }

  /** Oldest segments of one session until it fits; the newest stays unless the session was removed. */
  private async cutSession(d: SessionDir): Promise<number> {
    let removed = 0;
    while (d.bytes > this.limits.sessionBytes && this.deletable(d)) removed += await this.dropOldest(d);
    return removed;
  }

  private async cutTotal(dirs: SessionDir[]): Promise<PruneResult> {
    const result: PruneResult = { removedDirs: 0, removedBytes: 0 };
    let total = dirs.reduce((s, d) => s + d.bytes, 0);
    if (total <= this.limits.totalBytes) return result;
    // Removed sessions first, the longest removed first.
    const removed = dirs.filter((d) => d.removedAt !== null).sort((a, b) => a.removedAt! - b.removedAt!);
    for (const d of removed) {
      while (total > this.limits.totalBytes && this.deletable(d)) {
        const b = await this.dropOldest(d);
        total -= b;
        result.removedBytes += b;
      }
      if (!d.segs.length) {
        await rm(d.dir, { recursive: true, force: true });
        result.removedDirs++;
      }
      if (total <= this.limits.totalBytes) return result;
    }
    // Then the biggest live session's oldest segment, again and again.
    for (;;) {
      const biggest = dirs.filter((d) => d.removedAt === null && this.deletable(d)).sort((a, b) => b.bytes - a.bytes)[0];
      if (!biggest || total <= this.limits.totalBytes) break;
      const b = await this.dropOldest(biggest);
      total -= b;
      result.removedBytes += b;
    }
    if (total > this.limits.totalBytes) this.log.warn({ total, cap: this.limits.totalBytes }, 'Stored output is over logRetentionTotalBytes even with only the segments being written left');
    return result;
  }

  private deletable(d: SessionDir): boolean {
    return d.removedAt !== null ? d.segs.length > 0 : d.segs.length > 1;
  }

  private async dropOldest(d: SessionDir): Promise<number> {
    const s = d.segs.shift()!;
    for (const f of s.files) await rm(join(d.dir, f), { force: true });
    d.bytes -= s.bytes;
    return s.bytes;
  }

  private async scan(): Promise<SessionDir[]> {
    let names: string[];
    try {
      names = await readdir(this.root);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
    const out: SessionDir[] = [];
    for (const name of names) {
      const d = await this.read(name);
      if (d) out.push(d);
    }
    return out;
  }

  private async read(id: string): Promise<SessionDir | null> {
    if (!SESSION_DIR_RE.test(id)) return null;
    const dir = join(this.root, id);
    try {
      if (!(await lstat(dir)).isDirectory()) return null;
    } catch {
      return null;
    }
    let removedAt: number | null = null;
    try {
      const r = JSON.parse(await readFile(join(dir, 'removed.json'), 'utf8')) as { removedAt?: unknown };
      const t = typeof r.removedAt === 'string' ? Date.parse(r.removedAt) : NaN;
      removedAt = Number.isFinite(t) ? t : 0;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') removedAt = 0;
    }
    const segs: Seg[] = [];
    for (const e of await listSegments(dir)) {
      const files = [...(e.plain ? [segmentFile(e.n)] : []), ...(e.gz ? [segmentFile(e.n, true)] : [])];
      let bytes = 0;
      for (const f of files) bytes += await lstat(join(dir, f)).then((s) => s.size, () => 0);
      segs.push({ n: e.n, bytes, files });
    }
    return { id, dir, removedAt, segs, bytes: segs.reduce((s, x) => s + x.bytes, 0) };
  }
}
