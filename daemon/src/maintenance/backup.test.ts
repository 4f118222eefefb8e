import Database from 'better-sqlite3';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { Store, latestVersion } from '../store/index.js';
import { FakeClock } from '../../test/helpers/clock.js';
import { Backups, BACKUP_NAME } from './backup.js';
import { RestoredOrphans, restoreDb } from './restore.js';
import type { ContainerSummary } from '../runtime/port.js';

const log = pino({ level: 'silent' });

describe('backups and restore (real SQLite files)', () => {
  const dirs: string[] = [];
  const stores: Store[] = [];
  afterEach(async () => {
    for (const s of stores.splice(0)) s.close();
    for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
  });
  const home = async () => {
    const d = await mkdtemp(join(tmpdir(), 'bt-maint-'));
    dirs.push(d);
    return d;
  };
  const open = (h: string) => {
    const s = Store.open(join(h, 'berth.db'));
    stores.push(s);
    return s;
  };

  it('backs up online into backups/ (0600, verified, no temp left) and keeps the newest N', async () => {
    const h = await home();
    const store = open(h);
    store.meta.set('marker', 'one');
    const clock = new FakeClock(Date.parse('2026-12-02T03:17:00Z'));
    const b = new Backups(store.db, { home: h, keep: 3, clock, log });
    const made: string[] = [];
    for (let i = 0; i < 5; i++) {
      const r = await b.backup();
      made.push(r.path);
      expect(basename(r.path)).toMatch(BACKUP_NAME);
      expect((await stat(r.path)).mode & 0o777).toBe(0o600);
      clock.advance(24 * 3600_000);
    }
    expect(made[0]!.endsWith('berth-20261202T031700000Z.db')).toBe(true);
    expect(await b.list()).toEqual(made.slice(2));
    expect((await readdir(b.dir)).filter((n) => n.startsWith('.'))).toEqual([]);
    const copy = new Database(made[4]!, { readonly: true });
    try {
      expect(copy.pragma('integrity_check', { simple: true })).toBe('ok');
      expect(copy.pragma('journal_mode', { simple: true })).toBe('delete');
      expect(copy.prepare("SELECT value FROM meta WHERE key = 'marker'").get()).toEqual({ value: 'one' });
    } finally {
      copy.close();
    }
  });

  it('--to writes one named copy in the backups directory, outside the rotation, never overwriting and never elsewhere', async () => {
    const h = await home();
    const store = open(h);
    const b = new Backups(store.db, { home: h, keep: 1, clock: new FakeClock(), log });
    const made = await b.backup({ to: 'mine.db' });
    expect(made.path).toBe(join(h, 'backups', 'mine.db'));
    expect(made.pruned).toEqual([]);
    await expect(b.backup({ to: 'mine.db' })).rejects.toMatchObject({ code: 'BACKUP_TARGET_EXISTS' });
    expect((await b.backup({ to: join(h, 'backups', 'abs.db') })).path).toBe(join(h, 'backups', 'abs.db'));
    // Anywhere else is refused: a socket user must not make berthd write files where it likes.
    for (const to of [join(h, 'mine2.db'), '/etc/cron.d/berth', '../escape.db', 'sub/x.db', '.hidden.db', join(h, 'backups', '..', 'x.db')]) {
      await expect(b.backup({ to })).rejects.toMatchObject({ code: 'INVALID_PARAMS' });
    }
    expect(existsSync(join(h, 'mine2.db'))).toBe(false);
  });

  it('restore puts the backup in place, keeps the replaced database aside, and marks the restore', async () => {
    const h = await home();
    const store = open(h);
    store.meta.set('marker', 'before');
    const b = new Backups(store.db, { home: h, keep: 7, clock: new FakeClock(), log });
    const { path } = await b.backup();
    store.meta.set('marker', 'after');
    store.close();
    const r = await restoreDb(h, path, new Date('2026-12-02T09:00:00Z'));
    expect(r.previous).toBe(join(h, 'berth.db.before-restore-20261202T090000000Z'));
    expect(r.userVersion).toBe(latestVersion);
    expect(r.otherInstance).toBe(false);
    const again = open(h);
    expect(again.meta.get('marker')).toBe('before');
    expect(again.meta.get('restore_pending')).toContain(path);
    const aside = new Database(r.previous!, { readonly: true });
    try {
      expect(aside.prepare("SELECT value FROM meta WHERE key = 'marker'").get()).toEqual({ value: 'after' });
    } finally {
      aside.close();
    }
    // The backup itself is untouched.
    const orig = new Database(path, { readonly: true });
    try {
      expect(orig.prepare("SELECT value FROM meta WHERE key = 'restore_pending'").get()).toBeUndefined();
    } finally {
      orig.close();
    }
  });

  it('restore refuses what is not a sound berth database of a known schema, changing nothing', async () => {
    const h = await home();
    const store = open(h);
    store.meta.set('marker', 'live');
    store.close();
    const garbage = join(h, 'garbage.db');
    await writeFile(garbage, 'not a database at all, just text'.repeat(100));
    await expect(restoreDb(h, garbage)).rejects.toMatchObject({ code: 'RESTORE_INVALID' });
    const other = join(h, 'other.db');
    const o = new Database(other);
    o.exec('CREATE TABLE x (a)');
    o.pragma('user_version = 3');
    o.close();
    await expect(restoreDb(h, other)).rejects.toMatchObject({ code: 'RESTORE_INVALID' });
    const newer = join(h, 'newer.db');
    const s = Store.open(newer);
    s.db.pragma(`user_version = ${latestVersion + 1}`);
    s.close();
    await expect(restoreDb(h, newer)).rejects.toMatchObject({ code: 'RESTORE_INVALID' });
    await expect(restoreDb(h, join(h, 'missing.db'))).rejects.toMatchObject({ code: 'RESTORE_INVALID' });
    expect((await readdir(h)).filter((n) => n.includes('before-restore') || n.includes('restoring'))).toEqual([]);
    expect(open(h).meta.get('marker')).toBe('live');
  });

  it('after a restore the orphans of the first resync are kept, later ones are not, gone ones are forgotten', async () => {
    const h = await home();
    const store = open(h);
    const guard = new RestoredOrphans(store.meta, log);
    const c = (id: string): ContainerSummary => ({ id, name: `berth-${id}`, labels: { 'dev.berth.session': `s-${id}` }, status: 'running' });
    expect(guard.keep([c('a')]).size).toBe(0);
    store.meta.set('restore_pending', JSON.stringify({ from: '/b.db', at: 'now' }));
    expect([...guard.keep([c('a'), c('b')])].sort()).toEqual(['a', 'b']);
    // A new orphan after the first pass is swept as always; 'a' was removed by someone and is forgotten.
    expect([...guard.keep([c('b'), c('n')])]).toEqual(['b']);
    expect([...guard.keep([c('a'), c('b')])]).toEqual(['b']);
  });
});

describe('restore while the database is open elsewhere', () => {
  it('is refused with RESTORE_DAEMON_RUNNING when another process holds the live database, changing nothing', async () => {
    const { spawn } = await import('node:child_process');
    const { createRequire } = await import('node:module');
    const sqlite = createRequire(import.meta.url).resolve('better-sqlite3');
    const h = await mkdtemp(join(tmpdir(), 'bt-maint-open-'));
    try {
      const s = Store.open(join(h, 'berth.db'));
      const b = new Backups(s.db, { home: h, keep: 7, clock: new FakeClock(), log });
      const { path } = await b.backup();
      s.close();
      // Another process with the database open, as a berthd serving another socket would have it.
      const script = `const D = require(${JSON.stringify(sqlite)}); const d = new D(${JSON.stringify(join(h, 'berth.db'))}); d.pragma('journal_mode = WAL'); d.prepare('SELECT 1').get(); console.log('open'); setInterval(() => {}, 1000);`;
      const holder = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
      try {
        await new Promise((r) => holder.stdout!.once('data', r));
        await expect(restoreDb(h, path)).rejects.toMatchObject({ code: 'RESTORE_DAEMON_RUNNING' });
        expect((await readdir(h)).filter((n) => n.includes('before-restore'))).toEqual([]);
      } finally {
        holder.kill('SIGKILL');
        await new Promise((r) => holder.once('exit', r));
      }
      expect((await restoreDb(h, path)).previous).not.toBeNull();
    } finally {
      await rm(h, { recursive: true, force: true });
    }
  });
});
