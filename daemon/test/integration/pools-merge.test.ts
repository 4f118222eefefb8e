import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Task } from '@berth/client-sdk/protocol';
import { hostGit } from '../helpers/git.js';
import { PoolFixture } from '../helpers/pool-fixture.js';

/**
 * Pools on the real engine with scripted agents (helpers/task-agent.ts): each claims its task
 * through its bridge, commits, and completes. No model is needed.
 */
describe('pools: review, merges, restarts (real engine, scripted agents)', () => {
  let f: PoolFixture;

  beforeAll(async () => {
    f = await PoolFixture.start();
  }, 600_000);

  afterAll(async () => {
    await f?.[Symbol.asyncDispose]();
  }, 300_000);

  it('a reviewer asks for changes once, then approves; auto-merge squashes into the base', async () => {
    const repo = await f.project('reviewed');
    const t = await f.d.client.tasks.add({ project: 'reviewed', title: 'needs review' });
    await f.d.client.pools.create({ project: 'reviewed', agent: 'worker', reviewer: 'reviewer', parallel: 1, autoMerge: true, untilEmpty: true });
    await f.untilPool('reviewed-pool', (p) => p.state === 'done', 'the pool to finish', 900_000);
    const done = await f.d.client.tasks.get({ id: t.id });
    expect(done.state).toBe('done');
    expect(done.attempts).toBe(2);
    expect(done.notes.filter((n) => n.kind === 'changes')).toHaveLength(1);
    expect(done.result?.merged).toMatch(/^[0-9a-f]{40}$/);
    expect(hostGit(repo, 'rev-parse', 'main')).toBe(done.result?.merged);
    expect(hostGit(repo, 'show', `main:task-${t.id}.txt`)).toBe(`task ${t.id}: needs review\nreviewed`);
    const reviews = f.events.filter((e) => e.type === 'task.reviewed' && (e.data as { task: Task }).task.id === t.id).map((e) => (e.data as { decision: string }).decision);
    expect(reviews).toEqual(['changes', 'approve']);
  }, 900_000);

  it('auto-merge: a conflict with the base sends the task back with the paths; the next attempt merges', async () => {
    const repo = await f.project('clash', { 'shared.txt': 'base\n' });
    const a = await f.d.client.tasks.add({ project: 'clash', title: 'shared a', priority: 2 });
    const b = await f.d.client.tasks.add({ project: 'clash', title: 'shared b', priority: 1 });
    await f.d.client.pools.create({ project: 'clash', agent: 'worker', parallel: 2, autoMerge: true, untilEmpty: true });
    await f.untilPool('clash-pool', (p) => p.state === 'done', 'the pool to finish', 900_000);
    const tasks = new Map((await f.tasksOf('clash')).map((t) => [t.id, t]));
    for (const t of tasks.values()) {
      expect(t.state).toBe('done');
      expect(t.result?.merged).toMatch(/^[0-9a-f]{40}$/);
    }
    // Exactly one of the two met the other's merge and was sent back naming shared.txt.
    const conflicts = [...tasks.values()].flatMap((t) => t.notes.filter((n) => n.kind === 'conflict').map((n) => ({ id: t.id, text: n.text })));
    expect(conflicts).toHaveLength(1);
    expect(conflicts[0]!.text).toContain('shared.txt');
    expect([a.id, b.id]).toContain(conflicts[0]!.id);
    const last = conflicts[0]!.id;
    expect(hostGit(repo, 'show', 'main:shared.txt')).toBe(`task ${last}: ${tasks.get(last)!.title}`);
    expect(hostGit(repo, 'status', '--porcelain')).toBe('');
  }, 900_000);

  it('auto-merge waits for a dirty main checkout, never merges a change to .berth/, and workers have their own checkouts in a when-shared project', async () => {
    const repo = await f.project('careful');
    await f.d.client.projects.update({ name: 'careful', worktrees: 'when-shared' });
    const inject = await f.d.client.tasks.add({ project: 'careful', title: 'berthfile inject', priority: 2 });
    const plain = await f.d.client.tasks.add({ project: 'careful', title: 'plain b', priority: 1 });
    await writeFile(join(repo, 'README.md'), 'edited by the user, not committed\n');
    await f.d.client.pools.create({ project: 'careful', agent: 'worker', parallel: 1, autoMerge: true, untilEmpty: true });
    // Both done; the plain one waits for the main checkout, the other is left for a person.
    await f.untilPool('careful-pool', (_p, tasks) => tasks.every((t) => t.state === 'done' && t.result?.commit), 'both tasks done');
    await f.d.waitForLog(`merging task ${plain.id} waits`, 120_000);
    const waiting = await f.d.client.tasks.get({ id: plain.id });
    expect(waiting.result?.merged).toBeNull();
    expect((await f.d.client.pools.get({ id: 'careful-pool' })).state).toBe('running');
    hostGit(repo, 'checkout', '--', 'README.md');
    const pool = await f.untilPool('careful-pool', (p) => p.state === 'done', 'the merge after the main checkout is clean');
    expect((await f.d.client.tasks.get({ id: plain.id })).result?.merged).toBe(hostGit(repo, 'rev-parse', 'main'));
    const left = await f.d.client.tasks.get({ id: inject.id });
    expect(left.result?.merged).toBeNull();
    expect(left.notes.map((n) => n.kind)).toEqual(['unmerged']);
    expect(() => hostGit(repo, 'show', 'main:.berth/tasks.yaml')).toThrow();
    expect((await f.tasksOf('careful')).map((t) => t.id).sort()).toEqual([inject.id, plain.id].sort());
    // Its worker stays for `berth merge`, on its own checkout and branch (not the main checkout).
    expect(pool.sessions.map((x) => x.name)).toEqual([`task-${inject.id}`]);
    const kept = await f.d.client.sessions.get({ id: `task-${inject.id}` });
    expect(kept.checkout?.branch).toBe(`berth/task-${inject.id}`);
  }, 900_000);

  it('kill -9 of berthd in the middle of a pool run: it finishes with nothing lost or duplicated', async () => {
    await f.project('restarts');
    await f.agent('slow', { env: { AGENT_WORK_MS: '4000' } });
    const ids: number[] = [];
    for (let i = 0; i < 9; i++) ids.push((await f.d.client.tasks.add({ project: 'restarts', title: `job ${i}` })).id);
    await f.d.client.pools.create({ project: 'restarts', agent: 'slow', parallel: 3, untilEmpty: true });
    await f.untilPool('restarts-pool', (_p, tasks) => tasks.filter((t) => t.state === 'done').length >= 2 && tasks.some((t) => t.state === 'claimed'), 'work under way');
    await f.killAndRestart();
    await f.untilPool('restarts-pool', (p) => p.state === 'done', 'the pool to finish after the restart', 900_000);
    const tasks = await f.tasksOf('restarts');
    expect(tasks.map((t) => t.state)).toEqual(Array(9).fill('done'));
    for (const t of tasks) {
      expect(t.attempts).toBe(1);
      // One commit on the branch: the work was done once.
      expect(hostGit(join(f.d.home, 'projects', 'restarts'), 'rev-list', '--count', `main..berth/task-${t.id}`)).toBe('1');
    }
  }, 900_000);
});
