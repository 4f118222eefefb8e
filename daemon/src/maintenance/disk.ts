import { lstat, opendir } from 'node:fs/promises';
import { join } from 'node:path';
import type { DiskUse } from '@berth/client-sdk/protocol';
import type { Clock } from '../shared/clock.js';

type Kind = Exclude<keyof DiskUse, 'total' | 'measuredAt'>;

/** Which kind a top-level entry of `$BERTH_HOME` is. */
function kindOf(name: string): Kind {
  if (name === 'berth.db' || name === 'berth.db-wal' || name === 'berth.db-shm') return 'db';
  if (name === 'backups' || name.startsWith('berth.db.before-restore-')) return 'backups';
  if (name === 'logs' || name === 'checkouts' || name === 'repos') return name;
  return 'other';
}

/**
 * Bytes under `$BERTH_HOME` by kind. The walk is asynchronous (each directory read and lstat goes to
 * libuv's pool, so the event loop serves between them), follows no link, counts a hard-linked file
 * once, and runs at most once per `maxAgeMs`: status reads the last measure and never waits for a walk.
 */
export class DiskUsage {
  private last: DiskUse | null = null;
  private walking: Promise<DiskUse> | null = null;

  constructor(
    private readonly home: string,
    private readonly clock: Clock,
    private readonly maxAgeMs = 60_000,
  ) {}

  /** The last measure (null before the first), starting a new one in the background when it is older than maxAgeMs. Never waits for a walk. */
  current(): DiskUse | null {
    const age = this.last ? this.clock.now().getTime() - Date.parse(this.last.measuredAt) : Infinity;
    if (age >= this.maxAgeMs) void this.refresh().catch(() => {});
    return this.last;
  }

  /** Measures now (joins a walk under way). */
  refresh(): Promise<DiskUse> {
    this.walking ??= this.walk().then(
      (d) => {
        this.last = d;
        this.walking = null;
        return d;
      },
      (err: unknown) => {
        this.walking = null;
        throw err;
      },
    );
    return this.walking;
  }

  private async walk(): Promise<DiskUse> {
    const out: DiskUse = { db: 0, backups: 0, logs: 0, checkouts: 0, repos: 0, other: 0, total: 0, measuredAt: '' };
    const seen = new Set<string>();
    const count = async (path: string, kind: Kind): Promise<void> => {
      const st = await lstat(path).catch(() => null);
      if (!st) return;
      if (st.nlink > 1 && !st.isDirectory()) {
        const key = `${st.dev}:${st.ino}`;
        if (seen.has(key)) return;
        seen.add(key);
      }
      out[kind] += st.size;
      if (!st.isDirectory()) return;
      const dir = await opendir(path).catch(() => null);
      if (!dir) return;
      try {
        for await (const e of dir) await count(join(path, e.name), kind);
      } catch {
        // a directory removed while walked
      }
    };
    const top = await opendir(this.home).catch(() => null);
    if (top) for await (const e of top) await count(join(this.home, e.name), kindOf(e.name));
    out.total = out.db + out.backups + out.logs + out.checkouts + out.repos + out.other;
    out.measuredAt = this.clock.now().toISOString();
    return out;
  }
}
