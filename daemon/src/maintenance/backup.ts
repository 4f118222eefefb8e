import Database from 'better-sqlite3';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync } from 'node:fs';
import { lstat, open, readdir, rename, stat, unlink } from 'node:fs/promises';
import { basename, dirname, isAbsolute, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { BerthError, type BackupResult, type ErrorCode } from '@berth/client-sdk/protocol';
import type { Logger } from '../log.js';
import type { Clock } from '../shared/clock.js';
import type { Db } from '../store/db.js';
import { latestVersion } from '../store/migrations.js';

/** The names the backup job gives its files; only these are ever rotated away. */
export const BACKUP_NAME = /^berth-\d{8}T\d{6}(\d{3})?Z\.db$/;
/** A copy being written (rename makes it a backup); left only by a crash, removed by the prune job. */
export const BACKUP_TEMP = /^\.berth-.*\.db\.tmp-[0-9a-f]+$/;

/** A name `berth backup --to` may give its copy: one plain file name in the backups directory. */
const COPY_NAME = /^(?!\.)[A-Za-z0-9._-]{1,200}$/;

/** `2026-12-02T03:17:00.123Z` → `20261202T031700123Z`. */

export const stamp = (d: Date) => d.toISOString().replace(/[-:.]/g, '');

/**
 * Checks that `file` is a sound berth database: SQLite's integrity check passes, and its schema
 * version is one this berthd knows (older ones are migrated when berthd next opens them).
 * Opened read-write only to make it self-contained (rollback journal, not WAL), so callers pass a copy.
 */
export function verifyCopy(file: string): { userVersion: number; instanceId: string | null } {
  let db: Database.Database;
  try {
    db = new Database(file, { fileMustExist: true });
  } catch (err) {
    throw new BerthError('RESTORE_INVALID', `${file} cannot be opened as a SQLite database: ${(err as Error).message}`, { details: { file } });
  }
  try {
    let check: unknown;
    try {
      db.pragma('journal_mode = DELETE');
      check = db.pragma('integrity_check', { simple: true });
    } catch (err) {
      throw new BerthError('RESTORE_INVALID', `${file} is not a readable SQLite database: ${(err as Error).message}`, { details: { file } });
    }
    if (check !== 'ok') throw new BerthError('RESTORE_INVALID', `${file} fails SQLite's integrity check: ${String(check)}`, { details: { file, check } });
    const userVersion = db.pragma('user_version', { simple: true }) as number;
    const tables = new Set(db.prepare<[], { name: string }>("SELECT name FROM sqlite_master WHERE type = 'table'").all().map((r) => r.name));
    if (userVersion < 1 || !tables.has('sessions') || !tables.has('meta')) {
      throw new BerthError('RESTORE_INVALID', `${file} is a SQLite database but not berth's (schema version ${userVersion}, no sessions/meta tables)`, { details: { file, userVersion } });
    }
    if (userVersion > latestVersion) {
      throw new BerthError('RESTORE_INVALID', `${file} is at schema version ${userVersion}, newer than this berthd knows (${latestVersion})`, {
        details: { file, userVersion, latestVersion },
      });
    }
    const instanceId = db.prepare<[], { value: string }>("SELECT value FROM meta WHERE key = 'instance_id'").get()?.value ?? null;
    return { userVersion, instanceId };
  } finally {
    db.close();
  }
}

const WORKER = new URL('./verify-worker.js', import.meta.url);

/**
 * verifyCopy off the event loop (a worker thread), so berthd keeps serving while a large copy is
 * checked. Run from sources (unit tests), where there is no compiled worker, it checks in-thread.
 */
export function verifyCopyOffThread(file: string): Promise<ReturnType<typeof verifyCopy>> {
  if (!existsSync(fileURLToPath(WORKER))) return Promise.resolve().then(() => verifyCopy(file));
  return new Promise((resolve, reject) => {
    const w = new Worker(WORKER, { workerData: { file } });
    type Answer = { ok: true; result: ReturnType<typeof verifyCopy> } | { ok: false; code: ErrorCode; message: string; details: Record<string, unknown> | null };
    w.once('message', (m: Answer) => {
      if (m.ok) resolve(m.result);
      else reject(new BerthError(m.code, m.message, m.details ? { details: m.details } : {}));
    });
    w.once('error', reject);
    w.once('exit', (code) => reject(new Error(`the verifying thread exited (${code}) without an answer`)));
  });
}

/** Creates `file` empty with mode 0600 (fails if it exists), so the copy is never readable by others, even briefly. */
async function createPrivate(file: string): Promise<void> {
  const fh = await open(file, 'wx', 0o600);
  await fh.close();
}

export interface BackupsOptions {
  /** `$BERTH_HOME`; backups go in its `backups/`. */
  home: string;
  /** How many scheduled backups to keep (config backupKeep). */
  keep: number;
  clock: Clock;
  log: Logger;
}

/**
 * Online backups of the live database with SQLite's backup API (better-sqlite3 `db.backup()`, which
 * copies page by page between event-loop turns, so berthd serves while it runs). Each copy is
 * written under a temporary name, verified (integrity check) and only then renamed into place;
 * older backups are rotated away only after that, so a failed backup never costs a good one.
 */
export class Backups {
  readonly dir: string;

  constructor(
    private readonly db: Db,
    private readonly o: BackupsOptions,
  ) {
    this.dir = join(o.home, 'backups');
  }

  async backup(opts: { to?: string } = {}): Promise<BackupResult> {
    let final: string;
    if (opts.to !== undefined) {
      // Only into the backups directory: whoever may use the socket may ask for a backup, and
      // berthd (often root) writing a file wherever it is told would let them plant one anywhere.
      const name = isAbsolute(opts.to) ? (dirname(opts.to) === this.dir ? basename(opts.to) : null) : opts.to;
      if (name === null || !COPY_NAME.test(name)) {
        throw new BerthError('INVALID_PARAMS', `berthd writes backups only into ${this.dir}: give a file name there (letters, digits, . _ -), then copy the file where you want it`, {
          details: { to: opts.to, dir: this.dir },
        });
      }
      mkdirSync(this.dir, { recursive: true, mode: 0o700 });
      final = join(this.dir, name);
      if (await lstat(final).then(() => true, () => false)) throw new BerthError('BACKUP_TARGET_EXISTS', `${final} exists; berth never overwrites it`, { details: { to: final } });
    } else {
      mkdirSync(this.dir, { recursive: true, mode: 0o700 });
      final = join(this.dir, `berth-${stamp(this.o.clock.now())}.db`);
    }
    const tmp = join(dirname(final), `.berth-${stamp(this.o.clock.now())}.db.tmp-${randomBytes(4).toString('hex')}`);
    try {
      await createPrivate(tmp);
      await this.db.backup(tmp);
      await verifyCopyOffThread(tmp);
      if (await lstat(final).then(() => true, () => false)) throw new BerthError('BACKUP_TARGET_EXISTS', `${final} appeared while the backup ran`, { details: { to: final } });
      await rename(tmp, final);
    } catch (err) {
      await unlink(tmp).catch(() => {});
      if (err instanceof BerthError && err.code !== 'RESTORE_INVALID') throw err;
      throw new BerthError('BACKUP_FAILED', `backup to ${final} failed: ${(err as Error).message}`, { details: { to: final }, cause: err });
    }
    const bytes = (await stat(final)).size;
    const pruned = opts.to === undefined ? await this.rotate(basename(final)) : [];
    this.o.log.info({ path: final, bytes, pruned }, 'Backed up the state database');
    return { path: final, bytes, pruned };
  }

  /** Removes all but the newest `keep` backups (by the stamp in their names); never `justMade`. */
  private async rotate(justMade: string): Promise<string[]> {
    const names = (await readdir(this.dir)).filter((n) => BACKUP_NAME.test(n)).sort();
    const excess = names.slice(0, Math.max(0, names.length - this.o.keep)).filter((n) => n !== justMade);
    const removed: string[] = [];
    for (const n of excess) {
      await unlink(join(this.dir, n)).then(
        () => removed.push(join(this.dir, n)),
        (err: Error) => this.o.log.warn({ file: n, err: err.message }, 'Could not remove an old backup'),
      );
    }
    return removed;
  }

  /** The scheduled backups there are, oldest first. */
  async list(): Promise<string[]> {
    const names = await readdir(this.dir).catch(() => [] as string[]);
    return names.filter((n) => BACKUP_NAME.test(n)).sort().map((n) => join(this.dir, n));
  }

  /** Removes copies a crash left half-written (older than `olderThanMs`, so never one being written). */
  async removeStaleTemps(olderThanMs: number): Promise<string[]> {
    const names = await readdir(this.dir).catch(() => [] as string[]);
    const now = this.o.clock.now().getTime();
    const removed: string[] = [];
    for (const n of names.filter((x) => BACKUP_TEMP.test(x))) {
      const p = join(this.dir, n);
      const st = await lstat(p).catch(() => null);
      if (!st?.isFile() || now - st.mtimeMs < olderThanMs) continue;
      await unlink(p).then(() => removed.push(p), () => {});
    }
    return removed;
  }
}
