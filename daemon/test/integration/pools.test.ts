import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BerthEvent, Pool, Task } from '@berth/client-sdk/protocol';
import { poll, startWithProject, makeRepo, spawnDaemon, type DaemonProcess } from '../helpers/daemon.js';
import { docker } from '../helpers/docker.js';
import { collectEvents } from '../helpers/bridge-daemon.js';
import { ensureNodeGitImage } from '../helpers/claude-image.js';
import { hostGit, commitFiles } from '../helpers/git.js';
import { TASK_AGENT } from '../helpers/task-agent.js';

/**
 * Pools on the real engine with scripted agents (helpers/task-agent.ts): each claims its task
 * through its bridge, commits, and completes. No model is needed.
 */
describe('pools work through a backlog (real engine, scripted agents)', () => {
  let d: DaemonProcess;
  let image: string;
  const events: BerthEvent[] = [];
  let follow = { stop: () => {} };
  // Across a berthd restart the events of both daemons go into one list.
  const watch = (daemon: DaemonProcess) => (follow = collectEvents(daemon, events));

  beforeAll(async () => {
    image = await ensureNodeGitImage();
    ({ d } = await startWithProject({ env: { BERTH_ACTIVITY_CHECK_SEC: '1', BERTH_RESYNC_SEC: '2' } }));
    await d.client.agents.define({ name: 'worker', image, command: ['node', '-e', TASK_AGENT], restartPolicy: 'never' });
    await d.client.agents.define({ name: 'reviewer', image, command: ['node', '-e', TASK_AGENT], restartPolicy: 'never' });
    watch(d);
  }, 600_000);

  afterAll(async () => {
    follow.stop();
    await d?.[Symbol.asyncDispose]();
  }, 300_000);

  async function project(name: string, files: Record<string, string> = { 'README.md': 'hi\n' }): Promise<string> {
    const repo = await makeRepo(join(d.home, 'projects', name));
    commitFiles(repo, files, 'seed');
    await d.client.projects.add({ name, path: repo });
    return repo;
  }

  const tasksOf = async (project: string): Promise<Task[]> => (await d.client.tasks.list({ project, limit: 1000 })).items;

  async function untilPool(id: string, pred: (p: Pool, tasks: Task[]) => boolean, what: string, timeoutMs = 600_000): Promise<Pool> {
    return poll(async () => {
      const p = await d.client.pools.get({ id });
      return pred(p, await tasksOf(p.project)) ? p : null;
    }, timeoutMs, what);
  }

  /** Every claim of the project's tasks, in order, from the events. */
  const claimsOf = (project: string) =>
    events.filter((e): e is Extract<BerthEvent, { type: 'task.claimed' }> => e.type === 'task.claimed' && e.data.task.project === project);

  it('12 tasks with dependencies, a pool of 3: 12 done on 12 branches, each claimed once, after its dependencies', async () => {
    const repo = await project('backlog');
    const ids: number[] = [];
    // Three chains of four: task n depends on task n-3.
    for (let i = 0; i < 12; i++) {
      const t = await d.client.tasks.add({ project: 'backlog', title: `step ${i}`, priority: 12 - i, ...(i >= 3 ? { dependsOn: [ids[i - 3]!] } : {}) });
      ids.push(t.id);
    }
    await d.client.pools.create({ project: 'backlog', agent: 'worker', parallel: 3, untilEmpty: true });
    const pool = await untilPool('backlog-pool', (p) => p.state === 'done', 'the pool to finish the backlog');
    expect(pool.tasks).toMatchObject({ done: 12, open: 0, claimed: 0, failed: 0 });
    expect(pool.finished).toBe(12);
    const tasks = await tasksOf('backlog');
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
    const claims = claimsOf('backlog');
    expect(claims.map((c) => c.data.task.id).sort((a, b) => a - b)).toEqual([...ids].sort((a, b) => a - b));
    const completedAt = new Map(events.filter((e) => e.type === 'task.completed').map((e) => [(e.data as { task: Task }).task.id, e.seq]));
    for (const c of claims) {
      for (const dep of c.data.task.dependsOn) expect(completedAt.get(dep)!).toBeLessThan(c.seq);
    }
    // No more than 3 at once: a claim never came while 3 others were held.
    let held = 0;
    let most = 0;
    for (const e of events) {
      if (e.type === 'task.claimed' && e.data.task.project === 'backlog') most = Math.max(most, ++held);
      if (e.type === 'task.completed' && e.data.task.project === 'backlog') held--;
    }
    expect(most).toBeLessThanOrEqual(3);
    // Without auto-merge each finished worker stays (stopped, its checkout kept) for `berth merge`.
    expect(pool.sessions.map((x) => [x.name, x.role, x.state]).sort()).toEqual(ids.map((id) => [`task-${id}`, 'worker', 'exited']).sort());
    const merged = await d.client.sessions.merge({ id: `task-${ids[0]}`, strategy: 'squash' });
    expect(hostGit(repo, 'show', `main:task-${ids[0]}.txt`)).toBe(`task ${ids[0]}: step 0`);
    expect(hostGit(repo, 'rev-parse', 'main')).toBe(merged.commit);
  }, 900_000);

  it('an agent killed mid-task and one that hangs lose their tasks, which other sessions redo', async () => {
    await project('crashy');
    const die = await d.client.tasks.add({ project: 'crashy', title: 'die once', priority: 2 });
    const hang = await d.client.tasks.add({ project: 'crashy', title: 'hang once', priority: 1 });
    const fine = await d.client.tasks.add({ project: 'crashy', title: 'plain' });
    await d.client.pools.create({ project: 'crashy', agent: 'worker', parallel: 2, untilEmpty: true });
    // Kill the container of the first attempt at "die once" while it works.
    const claim = await poll(async () => claimsOf('crashy').find((c) => c.data.task.id === die.id), 300_000, 'the claim of "die once"');
    const s = await poll(async () => {
      const x = await d.client.sessions.get({ id: claim.data.session.id });
      return x.state === 'running' && x.containerId ? x : null;
    }, 300_000, 'its session running');
    await docker('kill', s.containerId!);
    await untilPool('crashy-pool', (p) => p.state === 'done', 'the pool to finish', 900_000);
    const byId = new Map((await tasksOf('crashy')).map((t) => [t.id, t]));
    expect(byId.get(die.id)).toMatchObject({ state: 'done', attempts: 2 });
    expect(byId.get(die.id)!.notes.map((n) => n.kind)).toContain('exited');
    expect(byId.get(hang.id)).toMatchObject({ state: 'done', attempts: 2 });
    expect(byId.get(hang.id)!.notes.map((n) => n.kind)).toContain('expired');
    expect(byId.get(fine.id)).toMatchObject({ state: 'done', attempts: 1 });
    // Each attempt was its own session; the two attempts never overlapped.
    for (const id of [die.id, hang.id]) {
      const seqs = events.filter((e) => (e.type === 'task.claimed' || e.type === 'task.released') && (e.data as { task: Task }).task.id === id).map((e) => e.type);
      expect(seqs.slice(0, 3)).toEqual(['task.claimed', 'task.released', 'task.claimed']);
    }
  }, 900_000);

  it('a pool worker the supervisor finds stuck gives its task up to the next attempt', async () => {
    await project('stalls');
    await d.client.agents.define({ name: 'staller', image, command: ['node', '-e', TASK_AGENT], restartPolicy: 'never', stuckAfterSec: 5, onStuck: 'notify' });
    const t = await d.client.tasks.add({ project: 'stalls', title: 'stall once' });
    await d.client.pools.create({ project: 'stalls', agent: 'staller', parallel: 1, untilEmpty: true });
    await untilPool('stalls-pool', (p) => p.state === 'done', 'the pool to finish', 900_000);
    const done = await d.client.tasks.get({ id: t.id });
    expect(done).toMatchObject({ state: 'done', attempts: 2 });
    expect(done.notes.map((n) => n.kind)).toEqual(['stuck']);
  }, 900_000);

  it('scale up, stop (tasks back to open, the attempt not counted), run again, stop gracefully (work under way finishes)', async () => {
    await project('scaled');
    await d.client.agents.define({ name: 'slower', image, command: ['node', '-e', TASK_AGENT], env: { AGENT_WORK_MS: '6000' }, restartPolicy: 'never' });
    for (let i = 0; i < 8; i++) await d.client.tasks.add({ project: 'scaled', title: `piece ${i}` });
    await d.client.pools.create({ project: 'scaled', agent: 'slower', parallel: 1 });
    await untilPool('scaled-pool', (_p, tasks) => tasks.filter((t) => t.state === 'claimed').length === 1, 'one at work');
    expect((await d.client.pools.scale({ id: 'scaled-pool', parallel: 3 })).parallel).toBe(3);
    await untilPool('scaled-pool', (_p, tasks) => tasks.filter((t) => t.state === 'claimed').length === 3, 'three at work');
    const stopped = await d.client.pools.stop({ id: 'scaled-pool' });
    expect(stopped.state).toBe('stopped');
    // What is left is finished workers kept for `berth merge` (stopped); the others went.
    const idle = (p: Pool) => p.sessions.every((x) => x.role === 'worker' && x.state === 'exited');
    await untilPool('scaled-pool', (p, tasks) => idle(p) && tasks.every((t) => t.state !== 'claimed'), 'the sessions gone');
    const afterStop = await tasksOf('scaled');
    for (const t of afterStop.filter((x) => x.state === 'open')) expect(t.attempts).toBe(0);
    expect(afterStop.filter((t) => t.notes.some((n) => n.kind === 'released')).length).toBeGreaterThanOrEqual(1);

    await d.client.pools.create({ project: 'scaled', agent: 'slower', parallel: 2, name: 'scaled-pool' });
    await untilPool('scaled-pool', (_p, tasks) => tasks.filter((t) => t.state === 'claimed').length === 2, 'two at work again');
    const held = (await tasksOf('scaled')).filter((t) => t.state === 'claimed').map((t) => t.id);
    expect((await d.client.pools.stop({ id: 'scaled-pool', graceful: true })).state).toBe('draining');
    const end = await untilPool('scaled-pool', (p) => p.state === 'stopped', 'the pool to drain');
    expect(idle(end)).toBe(true);
    const final = new Map((await tasksOf('scaled')).map((t) => [t.id, t]));
    for (const id of held) expect(final.get(id)!.state).toBe('done');
    expect([...final.values()].filter((t) => t.state === 'claimed')).toEqual([]);
    expect([...final.values()].some((t) => t.state === 'open')).toBe(true);
  }, 900_000);

  it('a reviewer asks for changes once, then approves; auto-merge squashes into the base', async () => {
    const repo = await project('reviewed');
    const t = await d.client.tasks.add({ project: 'reviewed', title: 'needs review' });
    await d.client.pools.create({ project: 'reviewed', agent: 'worker', reviewer: 'reviewer', parallel: 1, autoMerge: true, untilEmpty: true });
    await untilPool('reviewed-pool', (p) => p.state === 'done', 'the pool to finish', 900_000);
    const done = await d.client.tasks.get({ id: t.id });
    expect(done.state).toBe('done');
    expect(done.attempts).toBe(2);
    expect(done.notes.filter((n) => n.kind === 'changes')).toHaveLength(1);
    expect(done.result?.merged).toMatch(/^[0-9a-f]{40}$/);
    expect(hostGit(repo, 'rev-parse', 'main')).toBe(done.result?.merged);
    expect(hostGit(repo, 'show', `main:task-${t.id}.txt`)).toBe(`task ${t.id}: needs review\nreviewed`);
    const reviews = events.filter((e) => e.type === 'task.reviewed' && (e.data as { task: Task }).task.id === t.id).map((e) => (e.data as { decision: string }).decision);
    expect(reviews).toEqual(['changes', 'approve']);
  }, 900_000);

  it('auto-merge: a conflict with the base sends the task back with the paths; the next attempt merges', async () => {
    const repo = await project('clash', { 'shared.txt': 'base\n' });
    const a = await d.client.tasks.add({ project: 'clash', title: 'shared a', priority: 2 });
    const b = await d.client.tasks.add({ project: 'clash', title: 'shared b', priority: 1 });
    await d.client.pools.create({ project: 'clash', agent: 'worker', parallel: 2, autoMerge: true, untilEmpty: true });
    await untilPool('clash-pool', (p) => p.state === 'done', 'the pool to finish', 900_000);
    const tasks = new Map((await tasksOf('clash')).map((t) => [t.id, t]));
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
    const repo = await project('careful');
    await d.client.projects.update({ name: 'careful', worktrees: 'when-shared' });
    const inject = await d.client.tasks.add({ project: 'careful', title: 'berthfile inject', priority: 2 });
    const plain = await d.client.tasks.add({ project: 'careful', title: 'plain b', priority: 1 });
    await writeFile(join(repo, 'README.md'), 'edited by the user, not committed\n');
    await d.client.pools.create({ project: 'careful', agent: 'worker', parallel: 1, autoMerge: true, untilEmpty: true });
    // Both done; the plain one waits for the main checkout, the other is left for a person.
    await untilPool('careful-pool', (_p, tasks) => tasks.every((t) => t.state === 'done' && t.result?.commit), 'both tasks done');
    await d.waitForLog(`merging task ${plain.id} waits`, 120_000);
    const waiting = await d.client.tasks.get({ id: plain.id });
    expect(waiting.result?.merged).toBeNull();
    expect((await d.client.pools.get({ id: 'careful-pool' })).state).toBe('running');
    hostGit(repo, 'checkout', '--', 'README.md');
    const pool = await untilPool('careful-pool', (p) => p.state === 'done', 'the merge after the main checkout is clean');
    expect((await d.client.tasks.get({ id: plain.id })).result?.merged).toBe(hostGit(repo, 'rev-parse', 'main'));
    const left = await d.client.tasks.get({ id: inject.id });
    expect(left.result?.merged).toBeNull();
    expect(left.notes.map((n) => n.kind)).toEqual(['unmerged']);
    expect(() => hostGit(repo, 'show', 'main:.berth/tasks.yaml')).toThrow();
    expect((await tasksOf('careful')).map((t) => t.id).sort()).toEqual([inject.id, plain.id].sort());
    // Its worker stays for `berth merge`, on its own checkout and branch (not the main checkout).
    expect(pool.sessions.map((x) => x.name)).toEqual([`task-${inject.id}`]);
    const kept = await d.client.sessions.get({ id: `task-${inject.id}` });
    expect(kept.checkout?.branch).toBe(`berth/task-${inject.id}`);
  }, 900_000);

  it('kill -9 of berthd in the middle of a pool run: it finishes with nothing lost or duplicated', async () => {
    await project('restarts');
    await d.client.agents.define({ name: 'slow', image, command: ['node', '-e', TASK_AGENT], env: { AGENT_WORK_MS: '4000' }, restartPolicy: 'never' });
    const ids: number[] = [];
    for (let i = 0; i < 9; i++) ids.push((await d.client.tasks.add({ project: 'restarts', title: `job ${i}` })).id);
    await d.client.pools.create({ project: 'restarts', agent: 'slow', parallel: 3, untilEmpty: true });
    await untilPool('restarts-pool', (_p, tasks) => tasks.filter((t) => t.state === 'done').length >= 2 && tasks.some((t) => t.state === 'claimed'), 'work under way');
    follow.stop();
    d.client.close();
    d.proc.kill('SIGKILL');
    await d.waitExit();
    d = spawnDaemon({ home: d.home, ownsHome: true, env: { BERTH_ACTIVITY_CHECK_SEC: '1', BERTH_RESYNC_SEC: '2' } });
    await d.waitReady();
    watch(d);
    await untilPool('restarts-pool', (p) => p.state === 'done', 'the pool to finish after the restart', 900_000);
    const tasks = await tasksOf('restarts');
    expect(tasks.map((t) => t.state)).toEqual(Array(9).fill('done'));
    for (const t of tasks) {
      expect(t.attempts).toBe(1);
      // One commit on the branch: the work was done once.
      expect(hostGit(join(d.home, 'projects', 'restarts'), 'rev-list', '--count', `main..berth/task-${t.id}`)).toBe('1');
    }
  }, 900_000);
});
