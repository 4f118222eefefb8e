import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Pool, Task } from '@berth/client-sdk/protocol';
import { poll } from '../helpers/daemon.js';
import { docker } from '../helpers/docker.js';
import { hostGit } from '../helpers/git.js';
import { PoolFixture } from '../helpers/pool-fixture.js';

/**
 * Pools on the real engine with scripted agents (helpers/task-agent.ts): each claims its task
 * through its bridge, commits, and completes. No model is needed.
 */
describe('pools work through a backlog (real engine, scripted agents)', () => {
  let f: PoolFixture;

  beforeAll(async () => {
    f = await PoolFixture.start();
  }, 600_000);

  afterAll(async () => {
    await f?.[Symbol.asyncDispose]();
  }, 300_000);
  it('12 tasks with dependencies, a pool of 3: 12 done on 12 branches, each claimed once, after its dependencies', async () => {
    const repo = await f.project('backlog');
    const ids: number[] = [];
    // Three chains of four: task n depends on task n-3.
    for (let i = 0; i < 12; i++) {
      const t = await f.d.client.tasks.add({ project: 'backlog', title: `step ${i}`, priority: 12 - i, ...(i >= 3 ? { dependsOn: [ids[i - 3]!] } : {}) });
      ids.push(t.id);
    }
    await f.d.client.pools.create({ project: 'backlog', agent: 'worker', parallel: 3, untilEmpty: true });
    const pool = await f.untilPool('backlog-pool', (p) => p.state === 'done', 'the pool to finish the backlog');
    expect(pool.tasks).toMatchObject({ done: 12, open: 0, claimed: 0, failed: 0 });
    expect(pool.finished).toBe(12);
    const tasks = await f.tasksOf('backlog');
    for (const t of tasks) {
      expect(t.state).toBe('done');
      expect(t.attempts).toBe(1);
      expect(t.result?.branch).toBe(`berth/task-${t.id}`);
      expect(t.result?.commit).toMatch(/^[0-9a-f]{40}$/);
      // The change is on its branch in the project.
      expect(hostGit(repo, 'show', `berth/task-${t.id}:task-${t.id}.txt`)).toBe(`task ${t.id}: ${t.title}`);
      expect(hostGit(repo, 'rev-parse', `berth/task-${t.id}`)).toBe(t.result?.commit);
    }
    // Never two holders: each task claimed exactly once; a task claimed only after what it depends on completed.
    const claims = f.claimsOf('backlog');
    expect(claims.map((c) => c.data.task.id).sort((a, b) => a - b)).toEqual([...ids].sort((a, b) => a - b));
    const completedAt = new Map(f.events.filter((e) => e.type === 'task.completed').map((e) => [(e.data as { task: Task }).task.id, e.seq]));
    for (const c of claims) {
      for (const dep of c.data.task.dependsOn) expect(completedAt.get(dep)!).toBeLessThan(c.seq);
    }
    // No more than 3 at once: a claim never came while 3 others were held.
    let held = 0;
    let most = 0;
    for (const e of f.events) {
      if (e.type === 'task.claimed' && e.data.task.project === 'backlog') most = Math.max(most, ++held);
      if (e.type === 'task.completed' && e.data.task.project === 'backlog') held--;
    }
    expect(most).toBeLessThanOrEqual(3);
    // Without auto-merge each finished worker stays (stopped, its checkout kept) for `berth merge`.
    expect(pool.sessions.map((x) => [x.name, x.role, x.state]).sort()).toEqual(ids.map((id) => [`task-${id}`, 'worker', 'exited']).sort());
    const merged = await f.d.client.sessions.merge({ id: `task-${ids[0]}`, strategy: 'squash' });
    expect(hostGit(repo, 'show', `main:task-${ids[0]}.txt`)).toBe(`task ${ids[0]}: step 0`);
    expect(hostGit(repo, 'rev-parse', 'main')).toBe(merged.commit);
  }, 900_000);

  it('an agent killed mid-task and one that hangs lose their tasks, which other sessions redo', async () => {
    await f.project('crashy');
    const die = await f.d.client.tasks.add({ project: 'crashy', title: 'die once', priority: 2 });
    const hang = await f.d.client.tasks.add({ project: 'crashy', title: 'hang once', priority: 1 });
    const fine = await f.d.client.tasks.add({ project: 'crashy', title: 'plain' });
    await f.d.client.pools.create({ project: 'crashy', agent: 'worker', parallel: 2, untilEmpty: true });
    // Kill the container of the first attempt at "die once" while it works.
    const claim = await poll(async () => f.claimsOf('crashy').find((c) => c.data.task.id === die.id), 300_000, 'the claim of "die once"');
    const s = await poll(async () => {
      const x = await f.d.client.sessions.get({ id: claim.data.session.id });
      return x.state === 'running' && x.containerId ? x : null;
    }, 300_000, 'its session running');
    await docker('kill', s.containerId!);
    await f.untilPool('crashy-pool', (p) => p.state === 'done', 'the pool to finish', 900_000);
    const byId = new Map((await f.tasksOf('crashy')).map((t) => [t.id, t]));
    expect(byId.get(die.id)).toMatchObject({ state: 'done', attempts: 2 });
    expect(byId.get(die.id)!.notes.map((n) => n.kind)).toContain('exited');
    expect(byId.get(hang.id)).toMatchObject({ state: 'done', attempts: 2 });
    expect(byId.get(hang.id)!.notes.map((n) => n.kind)).toContain('expired');
    expect(byId.get(fine.id)).toMatchObject({ state: 'done', attempts: 1 });
    // Each attempt was its own session; the two attempts never overlapped.
    for (const id of [die.id, hang.id]) {
      const seqs = f.events.filter((e) => (e.type === 'task.claimed' || e.type === 'task.released') && (e.data as { task: Task }).task.id === id).map((e) => e.type);
      expect(seqs.slice(0, 3)).toEqual(['task.claimed', 'task.released', 'task.claimed']);
    }
  }, 900_000);

  it('a pool worker the supervisor finds stuck gives its task up to the next attempt', async () => {
    await f.project('stalls');
    await f.agent('staller', { stuckAfterSec: 5, onStuck: 'notify' });
    const t = await f.d.client.tasks.add({ project: 'stalls', title: 'stall once' });
    await f.d.client.pools.create({ project: 'stalls', agent: 'staller', parallel: 1, untilEmpty: true });
    await f.untilPool('stalls-pool', (p) => p.state === 'done', 'the pool to finish', 900_000);
    const done = await f.d.client.tasks.get({ id: t.id });
    expect(done).toMatchObject({ state: 'done', attempts: 2 });
    expect(done.notes.map((n) => n.kind)).toEqual(['stuck']);
  }, 900_000);

  it('scale up, stop (tasks back to open, the attempt not counted), run again, stop gracefully (work under way finishes)', async () => {
    await f.project('scaled');
    await f.agent('slower', { env: { AGENT_WORK_MS: '6000' } });
    for (let i = 0; i < 8; i++) await f.d.client.tasks.add({ project: 'scaled', title: `piece ${i}` });
    await f.d.client.pools.create({ project: 'scaled', agent: 'slower', parallel: 1 });
    await f.untilPool('scaled-pool', (_p, tasks) => tasks.filter((t) => t.state === 'claimed').length === 1, 'one at work');
    expect((await f.d.client.pools.scale({ id: 'scaled-pool', parallel: 3 })).parallel).toBe(3);
    await f.untilPool('scaled-pool', (_p, tasks) => tasks.filter((t) => t.state === 'claimed').length === 3, 'three at work');
    const stopped = await f.d.client.pools.stop({ id: 'scaled-pool' });
    expect(stopped.state).toBe('stopped');
    // What is left is finished workers kept for `berth merge` (stopped); the others went.
    const idle = (p: Pool) => p.sessions.every((x) => x.role === 'worker' && x.state === 'exited');
    await f.untilPool('scaled-pool', (p, tasks) => idle(p) && tasks.every((t) => t.state !== 'claimed'), 'the sessions gone');
    const afterStop = await f.tasksOf('scaled');
    for (const t of afterStop.filter((x) => x.state === 'open')) expect(t.attempts).toBe(0);
    expect(afterStop.filter((t) => t.notes.some((n) => n.kind === 'released')).length).toBeGreaterThanOrEqual(1);

    await f.d.client.pools.create({ project: 'scaled', agent: 'slower', parallel: 2, name: 'scaled-pool' });
    await f.untilPool('scaled-pool', (_p, tasks) => tasks.filter((t) => t.state === 'claimed').length === 2, 'two at work again');
    const held = (await f.tasksOf('scaled')).filter((t) => t.state === 'claimed').map((t) => t.id);
    expect((await f.d.client.pools.stop({ id: 'scaled-pool', graceful: true })).state).toBe('draining');
    const end = await f.untilPool('scaled-pool', (p) => p.state === 'stopped', 'the pool to drain');
    expect(idle(end)).toBe(true);
    const final = new Map((await f.tasksOf('scaled')).map((t) => [t.id, t]));
    for (const id of held) expect(final.get(id)!.state).toBe('done');
    expect([...final.values()].filter((t) => t.state === 'claimed')).toEqual([]);
    expect([...final.values()].some((t) => t.state === 'open')).toBe(true);
  }, 900_000);
});
