import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { SessionSpec } from '../shared/session-spec.js';
import { Store, latestVersion, migrations, openDb, schemaVersion } from './index.js';
import type { SessionRecord } from './session-rows.js';

const dirs: string[] = [];
const dbFile = () => {
  const d = mkdtempSync(join(tmpdir(), 'bt-db-'));
  dirs.push(d);
  return join(d, 'berth.db');
};
afterEach(() => dirs.splice(0).forEach((d) => rmSync(d, { recursive: true, force: true })));

describe('store', () => {
  it('migrates an empty database to the latest version, in WAL mode with a busy timeout', () => {
    const file = dbFile();
    const db = openDb(file);
    expect(schemaVersion(db)).toBe(latestVersion);
    expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
    expect(db.pragma('busy_timeout', { simple: true })).toBe(5000);
    db.close();
    expect(statSync(file).mode & 0o777).toBe(0o600);
  });

  it.each(migrations.map((m) => m.version).filter((v) => v < latestVersion).concat([0]))(
    'upgrades from version %i to the latest, keeping rows',
    (from) => {
      const file = dbFile();
      openDb(file, { targetVersion: from }).close();
      const store = Store.open(file);
      expect(schemaVersion(store.db)).toBe(latestVersion);
      store.projects.insert({ name: 'p', path: '/x', network: null, gitUrl: null, branch: null, sshKeyPath: null, worktrees: 'always', defaultImage: null, createdAt: 'a', updatedAt: 'a' });
      store.close();
      const again = Store.open(file);
      expect(again.projects.get('p')?.path).toBe('/x');
      again.close();
    },
  );

  it('hands out session numbers per project, never twice', () => {
    const s = Store.open(dbFile());
    s.projects.insert({ name: 'p', path: '/x', network: null, gitUrl: null, branch: null, sshKeyPath: null, worktrees: 'always', defaultImage: null, createdAt: 'a', updatedAt: 'a' });
    s.projects.insert({ name: 'q', path: '/y', network: null, gitUrl: null, branch: null, sshKeyPath: null, worktrees: 'always', defaultImage: null, createdAt: 'a', updatedAt: 'a' });
    expect([s.projects.takeSeq('p'), s.projects.takeSeq('p'), s.projects.takeSeq('q'), s.projects.takeSeq('p')]).toEqual([1, 2, 1, 3]);
    expect(s.meta.instanceId()).toMatch(/^[0-9a-f]{12}$/);
    expect(s.meta.instanceId()).toBe(s.meta.instanceId());
    s.close();
  });

  it('re-opening is a no-op migration', () => {
    const file = dbFile();
    Store.open(file).close();
    const s = Store.open(file);
    expect(schemaVersion(s.db)).toBe(latestVersion);
    s.close();
  });

  it('refuses a database from a newer berth', () => {
    const file = dbFile();
    const db = openDb(file);
    db.pragma(`user_version = ${latestVersion + 1}`);
    db.close();
    expect(() => openDb(file)).toThrow(/newer than this berthd knows/);
  });

  it('a failing migration leaves the database at the previous version', () => {
    const file = dbFile();
    const broken = [...migrations, { version: latestVersion + 1, description: 'broken', up: 'CREATE TABLE t (a); SELECT nonsense FROM nowhere;' }];
    expect(() => openDb(file, { migrations: broken })).toThrow();
    const db = openDb(file);
    expect(schemaVersion(db)).toBe(latestVersion);
    expect(db.prepare("SELECT count(*) AS n FROM sqlite_master WHERE name = 't'").get()).toEqual({ n: 0 });
    db.close();
  });

  it('agents round-trip with JSON columns and keep createdAt on redefine', () => {
    const s = Store.open(dbFile());
    const base = {
      name: 'a',
      image: null,
      command: ['x', 'y z'],
      env: { K: 'v' },
      role: null,
      readOnly: true,
      limits: { pids: 64 },
      restartPolicy: 'always' as const,
      network: 'internal' as const,
      readOnlyRootfs: true,
      capAdd: ['NET_BIND_SERVICE'],
      secrets: { TOKEN: 'gh' },
      budgetTokens: 2_000_000,
      stuckAfterSec: 90,
      onStuck: 'notify' as const,
    };
    expect(s.agents.upsert({ ...base, createdAt: 't1', updatedAt: 't1' }).created).toBe(true);
    const again = s.agents.upsert({ ...base, command: ['z'], createdAt: 't2', updatedAt: 't2' });
    expect(again).toEqual({ created: false, agent: { ...base, command: ['z'], createdAt: 't1', updatedAt: 't2' } });
    expect(s.agents.remove('a')).toBe(true);
    expect(s.agents.remove('a')).toBe(false);
    s.close();
  });

  it('a list page as SQLite writes it is the public view toSession makes, for every shape of row', () => {
    const s = Store.open(dbFile());
    s.projects.insert({ name: 'web', path: '/p/web', gitUrl: null, branch: null, sshKeyPath: null, worktrees: 'always', network: null, defaultImage: null, createdAt: 't0', updatedAt: 't0' });
    const spec = { image: 'img:1', command: ['sh', '-c', 'echo "é\u0001\\ \u2028 😀"'] } as SessionSpec;
    const base: SessionRecord = {
      id: 'a1', name: 'n1', project: 'web', agent: 'coder', mode: 'write', seq: 1, containerName: 'berth-web-1', spec,
      specHash: 'h', restartPolicy: 'on-failure', desired: 'running', generation: 1, recreate: false, state: 'running',
      containerId: null, restartCount: 0, crashCount: 0, nextRestartAt: null, handledFinish: null, errorCode: null,
      errorMessage: null, exitCode: null, checkoutDir: null, checkoutState: null, checkoutIdentity: null, removeOpts: null,
      branch: null, base: null, baseSha: null, budgetTokens: null, activity: null, gracefulDeadline: null, queuedAt: null, priority: 0, stuckRestarts: 0, merged: null, createdAt: '2026-01-01T00:00:00.000Z', startedAt: null, finishedAt: null, updatedAt: 't',
    };
    // Columns as the reconciler and the checkouts write them over a session's life.
    const variants: Record<string, string | number | null>[] = [
      {},
      { container_id: 'c'.repeat(64), restart_count: 3, next_restart_at: 't2', exit_code: 137, started_at: 's', finished_at: 'f' },
      { error_code: 'IMAGE_NOT_FOUND', error_message: 'no "image"\n' },
      { error_code: 'X', error_message: null },
      { error_code: '', error_message: 'ignored' },
      { checkout_dir: '/c/d', branch: 'berth/n', base: 'main', checkout_state: 'ready' },
      { checkout_dir: '/c/d', branch: null, base: 'main' },
      { checkout_dir: '', branch: 'b', base: 'main' },
      { exit_code: 0, mode: 'read', desired: 'removed', state: 'failed', restart_policy: 'never' },
      { budget_tokens: 5000, activity: JSON.stringify({ state: 'waiting-input', since: 't', reason: 'hook:Notification: "ok?"' }) },
      { desired: 'stopped', state: 'running', graceful_deadline: '2026-01-02T00:00:00.000Z', queued_at: null },
      { desired: 'stopped', state: 'stopped', graceful_deadline: '2026-01-02T00:00:00.000Z' },
      { state: 'pending', queued_at: '2026-01-02T00:00:00.000Z', priority: 3 },
      { merged: JSON.stringify({ strategy: 'squash', base: 'main', commit: 'c'.repeat(40), branchTip: 'b'.repeat(40), at: 't' }) },
    ];
    variants.forEach((v, i) => {
      const id = `a${i}`;
      s.sessions.insert({ ...base, id, name: `n${i}`, seq: i, containerName: `berth-web-${i}`, createdAt: `2026-01-01T00:00:${String(i).padStart(2, "0")}.000Z` });
      for (const [col, val] of Object.entries(v)) s.db.prepare(`UPDATE sessions SET ${col} = ? WHERE id = ?`).run(val, id);
    });
    s.usage.add('a1', 'claude-opus-4-8', { requests: 2, inputTokens: 3, outputTokens: 4, cacheReadTokens: 5, cacheCreationTokens: 6, costNanos: 301_500 });
    s.usage.add('a1', 'claude-haiku-4-5', { requests: 1, inputTokens: 1, outputTokens: 1, cacheReadTokens: 0, cacheCreationTokens: 0, costNanos: 7 });
    const page = s.sessions.page({ limit: 100 });
    expect(page).toHaveLength(variants.length);
    expect(JSON.parse(page[1]![2]).usage).toEqual({ requests: 3, inputTokens: 4, outputTokens: 5, cacheReadTokens: 5, cacheCreationTokens: 6, costUsd: 0.000301507 });
    for (const [createdAt, id, json] of page) {
      const want = s.sessions.view(s.sessions.get(id)!);
      expect(JSON.parse(json)).toStrictEqual(want);
      expect(createdAt).toBe(want.createdAt);
    }

    // A page asked again is read again only after a change: by berthd's connection or another one.
    const state = () => JSON.parse(s.sessions.page({ limit: 1 })[0]![2]).state;
    expect(s.sessions.page({ limit: 100 })).toBe(s.sessions.page({ limit: 100 }));
    expect(state()).toBe('running');
    s.sessions.observe('a0', 1, { state: 'exited' }, 't3');
    expect(state()).toBe('exited');
    const other = openDb(s.db.name);
    other.prepare("UPDATE sessions SET state = 'stopped' WHERE id = 'a0'").run();
    other.close();
    expect(state()).toBe('stopped');
    s.close();
  });
});
