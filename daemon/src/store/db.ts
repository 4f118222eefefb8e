import Database from 'better-sqlite3';
import { chmodSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { latestVersion, migrations, type Migration } from './migrations.js';


export type Db = Database.Database;

export interface OpenOptions {
  /** Stop at this schema version (tests of upgrades from every earlier version). */
  targetVersion?: number;
  migrations?: readonly Migration[];
}

/**
 * Opens (creating if needed) the state database: WAL so readers never block the writer,
 * a busy timeout so a second connection waits instead of failing, foreign keys on, then migrates.
 */
export function openDb(file: string, opts: OpenOptions = {}): Db {
  if (file !== ':memory:') mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  const db = new Database(file);
  try {
    // State may name paths and (later) secret references: owner-only.
    if (file !== ':memory:') chmodSync(file, 0o600);
    db.pragma('journal_mode = WAL');
    db.pragma('busy_timeout = 5000');
    db.pragma('foreign_keys = ON');
    db.pragma('synchronous = NORMAL');
    const list = opts.migrations ?? migrations;
    migrate(db, opts.targetVersion ?? list.at(-1)?.version ?? 0, list);
    return db;
  } catch (err) {
    db.close();
    throw err;
  }
}

export function schemaVersion(db: Db): number {
  return db.pragma('user_version', { simple: true }) as number;
}

export function migrate(db: Db, target: number = latestVersion, list: readonly Migration[] = migrations): void {
  const current = schemaVersion(db);
  const newest = list.at(-1)?.version ?? 0;
  if (current > newest) {
    throw new Error(
      `state database is at schema version ${current}, newer than this berthd knows (${newest}); upgrade berth or move the database away`,
    );
  }
  for (const m of list) {
    if (m.version <= current || m.version > target) continue;
    db.transaction(() => {
      db.exec(m.up);
      db.pragma(`user_version = ${m.version}`);
    })();
  }
}
