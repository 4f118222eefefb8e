import Database from 'better-sqlite3';
import { copyFile, lstat, rename, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { BerthError } from '@berth/client-sdk/protocol';
import type { Logger } from '../log.js';
import { LABELS } from '../runtime/labels.js';
import type { ContainerSummary } from '../runtime/port.js';
import type { MetaRepo } from '../store/meta.js';
import { stamp, verifyCopy } from './backup.js';

/** Meta keys of a restore: set in the restored copy, read by berthd's first resync after it. */
const PENDING = 'restore_pending';
const KEPT = 'restore_kept_orphans';

export interface RestoreResult {
  /** The live database now (the backup's content). */
  db: string;
  from: string;
  /** Where the database it replaced went (never deleted); null when there was none. */
  previous: string | null;
  userVersion: number;
  /** The backup's instance id differs from the replaced database's: another installation's state. */
  otherInstance: boolean;
}

const exists = (p: string) => lstat(p).then(() => true, () => false);

/**
 * Whether another process has `file` open (a berthd serving another socket of this home): an
 * exclusive lock cannot be had then. An unreadable file is not in use (a restore is for that).
 */
function inUse(file: string): boolean {
  let db: Database.Database | null = null;
  try {
    db = new Database(file, { fileMustExist: true, timeout: 200 });
    db.pragma('locking_mode = EXCLUSIVE');
    db.exec('BEGIN EXCLUSIVE');
    db.exec('COMMIT');
    return false;
  } catch (err) {
    const code = (err as { code?: string }).code ?? '';
    return code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED');
  } finally {
    db?.close();
  }
}

/**
 * Puts the backup `from` in place of `$BERTH_HOME/berth.db`. berthd must not be running (the caller
 * holds its socket while this runs). The backup itself is never changed: it is copied next to the
 * live database, verified there (integrity check, a berth schema no newer than this berthd's), marked
 * as restored, and only then swapped in; the database it replaces (with its -wal and -shm, which a
 * killed berthd leaves holding committed data) is moved to `berth.db.before-restore-<stamp>`.
 */
export async function restoreDb(home: string, from: string, now: Date = new Date()): Promise<RestoreResult> {
  const live = join(home, 'berth.db');
  if ((await exists(live)) && inUse(live)) {
    throw new BerthError('RESTORE_DAEMON_RUNNING', `${live} is open in another process (a berthd on another socket?)`, { details: { db: live } });
  }
  const st = await stat(from).catch(() => null);
  if (!st?.isFile()) throw new BerthError('RESTORE_INVALID', `${from} is not a file`, { details: { file: from } });
  const tmp = `${live}.restoring`;
  await unlink(tmp).catch(() => {});
  await copyFile(from, tmp);
  try {
    const { userVersion, instanceId } = verifyCopy(tmp);
    const h = new Database(tmp, { fileMustExist: true });
    try {
      h.prepare('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value').run(PENDING, JSON.stringify({ from, at: now.toISOString() }));
    } finally {
      h.close();
    }
    let previous: string | null = null;
    let otherInstance = false;
    if (await exists(live)) {
      try {
        const cur = new Database(live, { readonly: true, fileMustExist: true });
        try {
          const id = cur.prepare<[], { value: string }>("SELECT value FROM meta WHERE key = 'instance_id'").get()?.value ?? null;
          otherInstance = id !== null && instanceId !== null && id !== instanceId;
        } finally {
          cur.close();
        }
      } catch {
        // an unreadable live database is what a restore is for
      }
      previous = `${live}.before-restore-${stamp(now)}`;
      for (const suffix of ['', '-wal', '-shm']) {
        if (await exists(live + suffix)) await rename(live + suffix, previous + suffix);
      }
    }
    await rename(tmp, live);
    return { db: live, from, previous, userVersion, otherInstance };
  } catch (err) {
    await unlink(tmp).catch(() => {});
    throw err;
  }
}

/**
 * Keeps restore from killing agent work. Sessions started after the backup was made have running
 * containers but no row in the restored database: the reconciler's orphan sweep would remove them.
 * At the first resync after a restore, every such container is recorded as kept (in `meta`), logged,
 * and never swept; it keeps running, unsupervised, until someone removes it (`docker rm -f`), and is
 * forgotten once it is gone. Orphans that appear later are swept as always.
 */
export class RestoredOrphans {
  constructor(
    private readonly meta: MetaRepo,
    private readonly log: Logger,
  ) {}

  /** Of `candidates` (this resync's orphans), the ids the sweep must leave alone. */
  keep(candidates: ContainerSummary[]): Set<string> {
    const pending = this.meta.get(PENDING);
    const before = this.meta.get(KEPT) || '[]';
    const kept = new Set<string>(JSON.parse(before) as string[]);
    if (pending) {
      for (const c of candidates) {
        kept.add(c.id);
        this.log.warn(
          { containerId: c.id, name: c.name, sessionId: c.labels[LABELS.session] ?? null, restore: JSON.parse(pending) as unknown },
          'Container of a session the restored database does not know: kept running, not supervised; remove it with docker rm -f when its work is saved',
        );
      }
      this.meta.set(PENDING, '');
    }
    const listed = new Set(candidates.map((c) => c.id));
    const now = [...kept].filter((id) => listed.has(id));
    const text = JSON.stringify(now);
    if (text !== before) this.meta.set(KEPT, text);
    return new Set(now);
  }
}
