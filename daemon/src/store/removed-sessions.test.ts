import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, expect, it } from 'vitest';
import type { SessionSpec } from '../shared/session-spec.js';
import { Store } from './index.js';
import type { SessionRecord } from './session-rows.js';

const dirs: string[] = [];
afterEach(() => dirs.splice(0).forEach((d) => rmSync(d, { recursive: true, force: true })));
function open(): Store {
  const d = mkdtempSync(join(tmpdir(), 'bt-removed-'));
  dirs.push(d);
  const s = Store.open(join(d, 'berth.db'));
  s.projects.insert({ name: 'web', path: '/p/web', gitUrl: null, branch: null, sshKeyPath: null, worktrees: 'always', network: null, defaultImage: null, createdAt: 't0', updatedAt: 't0' });
  return s;
}
const session = (id: string, name: string, createdAt: string): SessionRecord => ({
  id, name, project: 'web', agent: 'coder', mode: 'write', seq: 1, containerName: `berth-${id}`, spec: { image: 'img:1', command: ['x'] } as SessionSpec,
  specHash: 'h', restartPolicy: 'never', desired: 'removed', generation: 1, recreate: false, state: 'exited',
  containerId: null, restartCount: 0, crashCount: 0, nextRestartAt: null, handledFinish: null, errorCode: null,
  errorMessage: null, exitCode: null, checkoutDir: null, checkoutState: null, checkoutIdentity: null, removeOpts: null,
  branch: null, base: null, baseSha: null, budgetTokens: null, activity: null, gracefulDeadline: null, queuedAt: null, priority: 0, stuckRestarts: 0, merged: null,
  createdAt, startedAt: null, finishedAt: null, updatedAt: createdAt,
});

it('a removal keeps a record in the same transaction; the name is free again; the newest removed of a name wins; prune forgets the old', () => {
  const s = open();
  s.sessions.insert(session('aaaa00000001', 'w1', '2026-01-01T00:00:00.000Z'));
  s.db.prepare("UPDATE sessions SET exit_code = 3, branch = 'berth/w1' WHERE id = 'aaaa00000001'").run();
  expect(s.sessions.remove('aaaa00000001', '2026-01-02T00:00:00.000Z')).toBe(true);
  expect(s.sessions.get('aaaa00000001')).toBeUndefined();
  expect(s.removedSessions.get('aaaa00000001')).toEqual({
    id: 'aaaa00000001', name: 'w1', project: 'web', agent: 'coder', branch: 'berth/w1', exitCode: 3, createdAt: '2026-01-01T00:00:00.000Z', removedAt: '2026-01-02T00:00:00.000Z',
  });
  // The name is taken again, and removed again.
  s.sessions.insert(session('bbbb00000002', 'w1', '2026-01-03T00:00:00.000Z'));
  expect(s.sessions.remove('bbbb00000002', '2026-01-04T00:00:00.000Z')).toBe(true);
  expect(s.removedSessions.byName('w1')?.id).toBe('bbbb00000002');
  expect(s.removedSessions.byIdPrefix('aaaa').map((r) => r.id)).toEqual(['aaaa00000001']);
  // Listed as it was (the public view) with removedAt, in creation order.
  const page = s.removedSessions.page({ limit: 10 }).map((r) => JSON.parse(r[2]) as { id: string; exitCode: number | null; removedAt: string; state: string });
  expect(page.map((p) => [p.id, p.exitCode, p.removedAt, p.state])).toEqual([
    ['aaaa00000001', 3, '2026-01-02T00:00:00.000Z', 'exited'],
    ['bbbb00000002', null, '2026-01-04T00:00:00.000Z', 'exited'],
  ]);
  // A removal without removedAt (a start that failed before it ran) keeps nothing.
  s.sessions.insert(session('cccc00000003', 'w3', '2026-01-05T00:00:00.000Z'));
  s.sessions.remove('cccc00000003');
  expect(s.removedSessions.get('cccc00000003')).toBeUndefined();

  expect(s.removedSessions.pruneRemovedBefore('2026-01-03T00:00:00.000Z')).toEqual(['aaaa00000001']);
  expect(s.removedSessions.get('aaaa00000001')).toBeUndefined();
  expect(s.removedSessions.get('bbbb00000002')).toBeDefined();
  s.close();
});
