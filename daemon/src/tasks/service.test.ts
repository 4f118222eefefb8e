import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { BerthError, MAX_TASK_BODY, MAX_TASK_NOTE, type BerthEvent, type ErrorCode, type TaskFileEntry } from '@berth/client-sdk/protocol';
import { FakeClock } from '../../test/helpers/clock.js';
import { EventBus } from '../events/bus.js';
import { createLogger } from '../log.js';
import { Store } from '../store/index.js';
import type { SessionRecord } from '../store/sessions.js';
import { TaskService } from './service.js';

const T0 = Date.parse('2026-12-01T10:00:00.000Z');
const at = (sec: number) => new Date(T0 + sec * 1000).toISOString();

const dirs: string[] = [];
const stores: Store[] = [];
afterEach(() => {
  stores.splice(0).forEach((s) => s.close());
  dirs.splice(0).forEach((d) => rmSync(d, { recursive: true, force: true }));
});

/** A TaskService on a real database file, a clock moved by hand, host files kept in a map. */
function setup(opts: { file?: string } = {}) {
  let file = opts.file;
  if (!file) {
    const dir = mkdtempSync(join(tmpdir(), 'bt-tasks-'));
    dirs.push(dir);
    file = join(dir, 'berth.db');
  }
  const store = Store.open(file);
  stores.push(store);
  for (const name of ['web', 'api']) {
    if (!store.projects.get(name)) {
      store.projects.insert({ name, path: `/p/${name}`, network: null, gitUrl: null, branch: null, sshKeyPath: null, worktrees: 'always', defaultImage: null, createdAt: at(0), updatedAt: at(0) });
    }
  }
  const clock = new FakeClock(T0);
  const bus = new EventBus(100_000, () => clock.now());
  const events: BerthEvent[] = [];
  bus.subscribe((e) => events.push(e));
  const files = new Map<string, string>();
  const alive = new Set<string>();
  const tasks = new TaskService({
    tasks: store.tasks,
    pools: store.pools,
    projects: store.projects,
    bus,
    clock,
    log: createLogger('silent', { pretty: false }),
    hostFile: (id, name, text) => (text === null ? files.delete(`${id}/${name}`) : files.set(`${id}/${name}`, text)),
    sessionAlive: (id) => alive.has(id),
  });
  /** A session of `project` (only what the task service reads of one), alive unless told otherwise. */
  const session = (n: number, project = 'web', branch: string | null = null): SessionRecord => {
    const id = n.toString(16).padStart(12, '0');
    alive.add(id);
    return { id, name: `agent-${n}`, project, branch } as SessionRecord;
  };
  const add = (title: string, o: { priority?: number; dependsOn?: number[]; maxAttempts?: number; project?: string } = {}) => tasks.add({ project: o.project ?? 'web', title, ...o }).id;
  const state = (id: number) => tasks.get(id).state;
  return { store, clock, events, files, alive, tasks, session, add, state, file };
}

/** The error code `fn` throws (it must throw a BerthError). */
function codeOf(fn: () => unknown): ErrorCode {
  try {
    fn();
  } catch (err) {
    if (err instanceof BerthError) return err.code;
    throw err;
  }
  throw new Error('did not throw');
}

describe('TaskService', () => {
  it('claims the highest priority first, then the oldest; a session holds one task; none left is null', () => {
    const { tasks, session, add, files, events } = setup();
    const low = add('low');
    const b = add('b', { priority: 5 });
    const c = add('c', { priority: 5 });
    const mid = add('mid', { priority: 1 });
    add('elsewhere', { priority: 99, project: 'api' });
    const [s1, s2, s3, s4, s5] = [1, 2, 3, 4, 5].map((n) => session(n));
    expect([s1, s2, s3, s4].map((s) => tasks.claim(s!).task?.id)).toEqual([b, c, mid, low]);
    expect(tasks.claim(s5!).task).toBeNull();
    // Asking again gives the task it holds, not another, and no second attempt.
    const again = tasks.claim(s1!).task!;
    expect(again).toMatchObject({ id: b, state: 'claimed', attempts: 1, claim: { session: s1!.id, sessionName: 'agent-1', attempt: 1 } });
    // The answer hands the task over: a claim through the bridge writes no /host/task.json.
    expect(files.size).toBe(0);
    expect(events.filter((e) => e.type === 'task.claimed').map((e) => e.type === 'task.claimed' && e.data.task.id)).toEqual([b, c, mid, low]);
  });

  it('claims a task only once every dependency is done, and counts again when they change', () => {
    const { store, tasks, session, add, state } = setup();
    /** Tasks whose kept count of dependencies not done (tasks.waiting) differs from a recount. */
    const drifted = () =>
      store.db
        .prepare("SELECT count(*) FROM tasks t WHERE waiting != (SELECT count(*) FROM task_deps d JOIN tasks u ON u.id = d.depends_on WHERE d.task_id = t.id AND u.state != 'done')")
        .pluck()
        .get();
    const a = add('a');
    const b = add('b');
    const top = add('top', { priority: 10, dependsOn: [a, b] });
    const [s1, s2, s3] = [1, 2, 3].map((n) => session(n));
    expect(tasks.claim(s1!).task?.id).toBe(a);
    expect(tasks.claim(s2!).task?.id).toBe(b);
    expect(tasks.claim(s3!).task).toBeNull();
    tasks.complete(s1!, 'a done');
    expect(tasks.claim(s3!).task).toBeNull();
    tasks.complete(s2!, 'b done');
    expect(tasks.claim(s3!).task?.id).toBe(top);
    tasks.complete(s3!, 'top done');

    // A dependency done and then reopened by hand holds its dependents back again.
    const after = add('after', { priority: 10, dependsOn: [a] });
    tasks.update({ id: a, reopen: true });
    expect(state(a)).toBe('open');
    expect(tasks.claim(s1!).task?.id).toBe(a);
    tasks.release(s1!);

    // A dependency removed (its rows go with it) no longer holds anything back; one set by update does.
    const gate = add('gate');
    const gated = add('gated', { priority: 20, dependsOn: [gate] });
    expect(tasks.get(gated).dependsOn).toEqual([gate]);
    tasks.remove(gate);
    expect(tasks.get(gated).dependsOn).toEqual([]);
    tasks.update({ id: gated, dependsOn: [after] });
    tasks.update({ id: after, dependsOn: [] });
    expect(tasks.claim(s1!).task?.id).toBe(after);
    tasks.complete(s1!, 'after done');
    expect(tasks.claim(s2!).task?.id).toBe(gated);
    expect(drifted()).toBe(0);
  });

  it('refuses a dependency that would close a cycle, on itself, unknown or of another project, changing nothing', () => {
    const { tasks, add } = setup();
    const a = add('a');
    const b = add('b', { dependsOn: [a] });
    const c = add('c', { dependsOn: [b] });
    const other = add('other', { project: 'api' });
    expect(codeOf(() => tasks.update({ id: a, dependsOn: [c] }))).toBe('TASK_DEPENDENCY_INVALID');
    expect(codeOf(() => tasks.update({ id: a, dependsOn: [b], title: 'renamed' }))).toBe('TASK_DEPENDENCY_INVALID');
    expect(codeOf(() => tasks.update({ id: a, dependsOn: [a] }))).toBe('TASK_DEPENDENCY_INVALID');
    expect(codeOf(() => tasks.update({ id: a, dependsOn: [999] }))).toBe('TASK_DEPENDENCY_INVALID');
    expect(codeOf(() => tasks.add({ project: 'web', title: 'x', dependsOn: [other] }))).toBe('TASK_DEPENDENCY_INVALID');
    expect(tasks.get(a)).toMatchObject({ title: 'a', dependsOn: [] });
    expect(tasks.list({ project: 'web' }).items.map((t) => t.title)).toEqual(['a', 'b', 'c']);
    // Not a cycle: two tasks depending on the same one.
    expect(tasks.update({ id: c, dependsOn: [a, b] }).dependsOn).toEqual([a, b]);
  });

  it('checks sizes: body, title, notes', () => {
    const { tasks, session, add } = setup();
    expect(codeOf(() => tasks.add({ project: 'web', title: 'big', body: 'x'.repeat(MAX_TASK_BODY + 1) }))).toBe('TASK_TOO_LARGE');
    expect(codeOf(() => tasks.add({ project: 'web', title: 't'.repeat(501) }))).toBe('TASK_TOO_LARGE');
    expect(codeOf(() => tasks.add({ project: 'web', title: '  ' }))).toBe('INVALID_PARAMS');
    expect(codeOf(() => tasks.add({ project: 'nope', title: 'x' }))).toBe('PROJECT_NOT_FOUND');
    const t = add('t');
    expect(codeOf(() => tasks.update({ id: t, body: 'é'.repeat(MAX_TASK_BODY / 2 + 1) }))).toBe('TASK_TOO_LARGE');
    const s = session(1);
    tasks.claim(s);
    expect(codeOf(() => tasks.complete(s, 'x'.repeat(MAX_TASK_NOTE + 1)))).toBe('TASK_TOO_LARGE');
    expect(codeOf(() => tasks.fail(s, 'x'.repeat(MAX_TASK_NOTE + 1)))).toBe('TASK_TOO_LARGE');
    expect(tasks.get(t)).toMatchObject({ state: 'claimed', body: '', notes: [] });
    expect(tasks.list({}).items).toHaveLength(1);
  });

  it('reopens a task whose lease ran out, counting the attempt, and fails it at maxAttempts with every note', () => {
    const { tasks, session, add, clock, events, state } = setup();
    const t = add('flaky', { maxAttempts: 2 });
    const [s1, s2, s3] = [1, 2, 3].map((n) => session(n));
    expect(tasks.claim(s1!, 10).task?.claim?.leaseUntil).toBe(at(10));
    clock.advance(10_000);
    tasks.sweep();
    expect(state(t)).toBe('claimed'); // ran out at 10 s, not before
    clock.advance(1);
    tasks.sweep();
    expect(tasks.get(t)).toMatchObject({ state: 'open', attempts: 1, claim: null, notes: [{ attempt: 1, session: s1!.id, kind: 'expired' }] });
    expect(events.some((e) => e.type === 'task.released' && e.data.reason === 'expired' && e.data.session?.id === s1!.id)).toBe(true);
    // The one that lost it is told so, whatever it calls; another session claims it meanwhile.
    expect(codeOf(() => tasks.heartbeat(s1!))).toBe('TASK_LEASE_LOST');
    expect(tasks.claim(s2!, 10).task).toMatchObject({ id: t, attempts: 2, claim: { session: s2!.id, attempt: 2 } });
    expect(codeOf(() => tasks.complete(s1!, 'done anyway'))).toBe('TASK_LEASE_LOST');
    expect(tasks.get(t).claim?.session).toBe(s2!.id);

    clock.advance(11_000);
    tasks.sweep();
    expect(tasks.get(t)).toMatchObject({ state: 'failed', attempts: 2, claim: null });
    expect(tasks.get(t).notes.map((n) => [n.attempt, n.session, n.kind])).toEqual([
      [1, s1!.id, 'expired'],
      [2, s2!.id, 'expired'],
    ]);
    expect(events.filter((e) => e.type === 'task.failed')).toHaveLength(1);
    expect(codeOf(() => tasks.heartbeat(s2!))).toBe('TASK_LEASE_LOST');
    expect(tasks.claim(s3!).task).toBeNull();

    // Reopened by hand: attempts afresh, the notes kept.
    expect(tasks.update({ id: t, reopen: true })).toMatchObject({ state: 'open', attempts: 0 });
    expect(tasks.claim(s3!).task).toMatchObject({ id: t, attempts: 1 });
    expect(tasks.get(t).notes.map((n) => n.kind)).toEqual(['expired', 'expired', 'reopened']);
  });

  it('ends the claim of a session that is gone at the next sweep', () => {
    const { tasks, session, add, alive } = setup();
    const t = add('t');
    const s = session(1);
    tasks.claim(s);
    alive.delete(s.id);
    tasks.sweep();
    expect(tasks.get(t)).toMatchObject({ state: 'open', attempts: 1, notes: [{ kind: 'exited', session: s.id }] });
  });

  it('extends a lease on heartbeat by the length the claim asked for, or the one the heartbeat asks for', () => {
    const { tasks, session, add, clock, state } = setup();
    const t = add('t');
    const s = session(1);
    tasks.claim(s, 30);
    clock.advance(20_000);
    expect(tasks.heartbeat(s).task.claim?.leaseUntil).toBe(at(50));
    clock.advance(20_000);
    tasks.sweep();
    expect(state(t)).toBe('claimed');
    expect(tasks.heartbeat(s, 100).task.claim?.leaseUntil).toBe(at(140));
    clock.advance(99_000);
    tasks.sweep();
    expect(state(t)).toBe('claimed');
    clock.advance(2_000);
    tasks.sweep();
    expect(state(t)).toBe('open');
  });

  it('lets bridge traffic extend a lease, at most once per tenth of it', () => {
    const { tasks, session, add, clock } = setup();
    const t = add('t');
    const s = session(1);
    const idle = session(2);
    tasks.touch(s.id); // before any claim: nothing to extend
    tasks.claim(s, 100);
    const lease = () => tasks.get(t).claim!.leaseUntil;
    expect(lease()).toBe(at(100));
    clock.advance(5_000);
    tasks.touch(s.id); // 5 s since the last touch: under a tenth of 100 s
    expect(lease()).toBe(at(100));
    clock.advance(5_000);
    tasks.touch(s.id);
    expect(lease()).toBe(at(110));
    clock.advance(9_000);
    tasks.touch(s.id);
    expect(lease()).toBe(at(110));
    clock.advance(1_000);
    tasks.touch(s.id);
    expect(lease()).toBe(at(120));
    tasks.touch(idle.id);
    expect(tasks.claim(idle).task).toBeNull();
  });

  it('completes, fails and releases as the agent says, and then the agent holds nothing', () => {
    const { tasks, session, add, events } = setup();
    const [a, b, c] = [add('a', { priority: 3 }), add('b', { priority: 2 }), add('c', { priority: 1, maxAttempts: 1 })];
    const s = session(1, 'web', 'berth/agent-1');
    expect(codeOf(() => tasks.complete(s, 'nothing'))).toBe('TASK_NOT_HELD');
    expect(codeOf(() => tasks.heartbeat(s))).toBe('TASK_NOT_HELD');
    expect(codeOf(() => tasks.fail(s, 'x'))).toBe('TASK_NOT_HELD');
    expect(codeOf(() => tasks.release(s))).toBe('TASK_NOT_HELD');
    expect(codeOf(() => tasks.review(s, 'approve'))).toBe('TASK_NOT_REVIEWING');

    tasks.claim(s);
    expect(tasks.complete(s, 'did it\u001b[31m\u0007 all\n\tfine').task).toMatchObject({
      id: a,
      state: 'done',
      claim: null,
      result: { branch: 'berth/agent-1', commit: null, summary: 'did it[31m all\n\tfine', merged: null },
    });
    expect(events.some((e) => e.type === 'task.completed' && e.data.task.id === a)).toBe(true);
    // Its own completion is not a lost lease.
    expect(codeOf(() => tasks.heartbeat(s))).toBe('TASK_NOT_HELD');

    expect(tasks.claim(s).task?.id).toBe(b);
    expect(tasks.fail(s, 'tests will not pass').task).toMatchObject({ id: b, state: 'open', attempts: 1, notes: [{ kind: 'failed', text: 'tests will not pass', session: s.id }] });
    expect(codeOf(() => tasks.complete(s, 'x'))).toBe('TASK_NOT_HELD');
    expect(tasks.claim(s).task?.id).toBe(b);
    expect(tasks.release(s).task).toMatchObject({ id: b, state: 'open', attempts: 2, notes: [{ kind: 'failed' }, { kind: 'released', text: 'released by the agent' }] });
    expect(codeOf(() => tasks.heartbeat(s))).toBe('TASK_NOT_HELD');

    tasks.update({ id: b, priority: -1 });
    expect(tasks.claim(s).task?.id).toBe(c);
    expect(tasks.fail(s, '').task).toMatchObject({ state: 'failed', notes: [{ kind: 'failed', text: 'the agent gave up' }] });
    expect(events.some((e) => e.type === 'task.failed' && e.data.task.id === c)).toBe(true);
  });

  it('tells the holder of a cancelled task that it lost it; a removal needs the cancel first', () => {
    const { tasks, session, add, files } = setup();
    const t = add('t');
    const s = session(1);
    // Given by a pool, so the session has it in /host/task.json too.
    expect(tasks.claimFor(t, s, 'pool1')).toBe(true);
    tasks.claimed(t, s);
    expect(files.has(`${s.id}/task.json`)).toBe(true);
    expect(codeOf(() => tasks.remove(t))).toBe('TASK_STATE');
    expect(tasks.cancel(t)).toMatchObject({ state: 'cancelled', claim: null });
    expect(files.has(`${s.id}/task.json`)).toBe(false);
    expect(codeOf(() => tasks.heartbeat(s))).toBe('TASK_LEASE_LOST');
    expect(codeOf(() => tasks.cancel(t))).toBe('TASK_STATE');
    expect(tasks.remove(t)).toEqual({ removed: t });
    expect(codeOf(() => tasks.get(t))).toBe('TASK_NOT_FOUND');
  });

  it("sends a pool's completed task to review, where only its reviewer decides; a pool's worker claims nothing else", () => {
    const { store, tasks, session, add, state, files } = setup();
    store.pools.insert({ id: 'pool1', project: 'web', agent: 'coder', parallel: 2, reviewer: 'critic', autoMerge: false, untilEmpty: false, state: 'running', createdAt: at(0) });
    const t = add('t', { maxAttempts: 2 });
    add('other');
    const worker = session(1);
    const reviewer = session(2);
    const stranger = session(3);
    // As the pool controller does it: claim, the pool's row, then the session's /host/task.json.
    expect(tasks.claimFor(t, worker, 'pool1')).toBe(true);
    store.pools.addSession({ sessionId: worker.id, pool: 'pool1', taskId: t, role: 'worker', createdAt: at(0) });
    tasks.claimed(t, worker);
    expect(JSON.parse(files.get(`${worker.id}/task.json`)!)).toMatchObject({ role: 'worker', task: { id: t, state: 'claimed', pool: 'pool1' } });
    expect(tasks.claim(worker).task).toMatchObject({ id: t, claim: { session: worker.id } });
    expect(tasks.complete(worker, 'ready').task.state).toBe('review');
    expect(files.has(`${worker.id}/task.json`)).toBe(false);
    // Done with its task, the pool's worker is given no other.
    expect(tasks.claim(worker).task).toBeNull();

    store.tasks.set(t, { reviewerSession: reviewer.id }, at(1));
    store.pools.addSession({ sessionId: reviewer.id, pool: 'pool1', taskId: t, role: 'reviewer', createdAt: at(1) });
    tasks.reviewing(t, reviewer);
    expect(JSON.parse(files.get(`${reviewer.id}/task.json`)!)).toMatchObject({ role: 'reviewer', task: { id: t, state: 'review' } });
    expect(tasks.claim(reviewer).task).toMatchObject({ id: t, state: 'review' });
    expect(codeOf(() => tasks.review(stranger, 'approve'))).toBe('TASK_NOT_REVIEWING');
    expect(codeOf(() => tasks.complete(reviewer, 'x'))).toBe('TASK_NOT_HELD');
    expect(tasks.review(reviewer, 'changes', 'add tests').task).toMatchObject({ state: 'open', notes: [{ kind: 'changes', text: 'add tests', session: reviewer.id }] });
    expect(files.has(`${reviewer.id}/task.json`)).toBe(false);
    expect(codeOf(() => tasks.review(reviewer, 'approve'))).toBe('TASK_NOT_REVIEWING');

    // The second attempt was the last: changes asked for then fail it.
    const w2 = session(4);
    expect(tasks.claimFor(t, w2, 'pool1')).toBe(true);
    store.pools.addSession({ sessionId: w2.id, pool: 'pool1', taskId: t, role: 'worker', createdAt: at(2) });
    tasks.complete(w2, 'again');
    store.tasks.set(t, { reviewerSession: reviewer.id }, at(2));
    expect(tasks.review(reviewer, 'changes').task).toMatchObject({ state: 'failed' });
    expect(state(t)).toBe('failed');

    // A session not of the pool that finishes one of its tasks: done, not parked in review waiting for a reviewer the pool never starts.
    const u = add('u');
    expect(tasks.claimFor(u, stranger, 'pool1')).toBe(true);
    expect(tasks.complete(stranger, 'by hand').task.state).toBe('done');
  });

  it('renews the leases of live sessions after a restart, and leaves the others to the sweep', () => {
    const first = setup();
    const [a, b] = [first.add('a'), first.add('b')];
    const live = first.session(1);
    const gone = first.session(2);
    first.tasks.claim(live, 60);
    first.tasks.claim(gone, 60);
    first.store.close();

    // berthd comes back 10 minutes later: no agent could heartbeat meanwhile.
    const again = setup({ file: first.file });
    again.clock.set(T0 + 600_000);
    again.alive.add(live.id);
    again.tasks.renewAfterRestart();
    // With the lease length the agent asked for (kept in the row), not the default.
    expect(again.tasks.get(a).claim?.leaseUntil).toBe(at(600 + 60));
    expect(again.tasks.get(b).claim?.leaseUntil).toBe(at(60));
    again.tasks.sweep();
    expect(again.tasks.get(a).state).toBe('claimed');
    expect(again.tasks.get(b)).toMatchObject({ state: 'open', attempts: 1, notes: [{ kind: 'expired', session: gone.id }] });
  });

  it('imports by key: adds, updates and leaves alone, with dependencies by key; a cycle changes nothing', () => {
    const { tasks, add, events, session } = setup();
    const entries: TaskFileEntry[] = [
      { key: 'schema', title: 'Schema' },
      { key: 'api', title: 'API', dependsOn: ['schema'], priority: 5 },
      { key: 'ui', title: 'UI', labels: ['front'] },
    ];
    const first = tasks.importEntries('web', entries);
    expect([first.added, first.updated, first.unchanged]).toEqual([3, 0, 0]);
    const id = Object.fromEntries(first.tasks.map((t) => [t.key, t.id]));
    expect(tasks.get(id.api!)).toMatchObject({ dependsOn: [id.schema], priority: 5, key: 'api' });

    const seen = events.length;
    const same = tasks.importEntries('web', entries);
    expect([same.added, same.updated, same.unchanged]).toEqual([0, 0, 3]);
    expect(events.length).toBe(seen);

    // A changed title, and dependencies alone changed (api now waits on ui), both count as updated.
    const changed = tasks.importEntries('web', [entries[0]!, { ...entries[1]!, dependsOn: ['ui'] }, { ...entries[2]!, title: 'UI v2' }]);
    expect([changed.added, changed.updated, changed.unchanged]).toEqual([0, 2, 1]);
    expect(tasks.get(id.api!).dependsOn).toEqual([id.ui]);
    expect(tasks.get(id.ui!).title).toBe('UI v2');

    // A key only in the project, not in the file, may be named.
    const plain = add('no key');
    const more = tasks.importEntries('web', [{ key: 'docs', title: 'Docs', dependsOn: ['schema'] }]);
    expect(more.tasks[0]!.dependsOn).toEqual([id.schema]);

    const before = JSON.stringify(tasks.list({ project: 'web' }));
    const refused = (e: TaskFileEntry[]) => {
      const code = codeOf(() => tasks.importEntries('web', e));
      expect(JSON.stringify(tasks.list({ project: 'web' }))).toBe(before);
      return code;
    };
    expect(refused([{ key: 'new', title: 'New' }, { key: 'schema', title: 'Schema', dependsOn: ['api'] }, { key: 'api', title: 'API', dependsOn: ['schema'] }])).toBe('TASKS_FILE_INVALID');
    expect(refused([{ key: 'ui', title: 'UI v2', dependsOn: ['docs'] }, { key: 'docs', title: 'Docs', dependsOn: ['schema', 'ui'] }])).toBe('TASKS_FILE_INVALID');
    expect(refused([{ key: 'self', title: 'Self', dependsOn: ['self'] }])).toBe('TASKS_FILE_INVALID');
    expect(refused([{ key: 'x', title: 'X', dependsOn: ['missing'] }])).toBe('TASKS_FILE_INVALID');
    expect(refused([{ key: 'x', title: 'X' }, { key: 'x', title: 'X again' }])).toBe('TASKS_FILE_INVALID');
    expect(refused([{ key: 'x', title: 'X' }, { key: 'y', title: 'Y', body: 'b'.repeat(MAX_TASK_BODY + 1) }])).toBe('TASK_TOO_LARGE');
    expect(tasks.get(plain).key).toBeNull();

    // Dependencies from a file hold claims back as any others do.
    const s = session(1);
    expect(tasks.claim(s).task?.key).toBe('schema');
  });

  it('lists in id order, page by page, by project and state', () => {
    const { tasks, add, session } = setup();
    for (let i = 0; i < 250; i++) add(`t${i}`, { project: i % 2 ? 'api' : 'web' });
    const s = session(1);
    tasks.claim(s);
    const seen: number[] = [];
    let cursor: string | undefined;
    for (;;) {
      const page = tasks.list({ project: 'web', limit: 50, ...(cursor ? { cursor } : {}) });
      seen.push(...page.items.map((t) => t.id));
      if (!page.nextCursor) break;
      cursor = page.nextCursor;
    }
    expect(seen).toHaveLength(125);
    expect([...seen].sort((a, b) => a - b)).toEqual(seen);
    expect(tasks.list({ state: 'claimed' }).items.map((t) => t.title)).toEqual(['t0']);
    expect(tasks.list({ project: 'api', state: 'open', limit: 1000 }).items).toHaveLength(125);
    expect(codeOf(() => tasks.list({ cursor: 'not-a-cursor' }))).toBe('INVALID_PARAMS');
  });

  it('never gives a task to two sessions, and the store refuses a second holder', () => {
    const { store, tasks, session, add } = setup();
    const ids = Array.from({ length: 60 }, (_, i) => add(`t${i}`, { priority: i % 4 }));
    const sessions = Array.from({ length: 12 }, (_, i) => session(i + 1));
    const got = new Map<number, string[]>();
    // Sessions in turn claim, and complete, fail or release: every claim is a task nobody holds.
    for (let round = 0; ; round++) {
      let any = false;
      for (const [k, s] of sessions.entries()) {
        const t = tasks.claim(s).task;
        if (!t) continue;
        any = true;
        const holders = tasks.list({ state: 'claimed', limit: 1000 }).items.filter((x) => x.id === t.id).map((x) => x.claim!.session);
        expect(holders).toEqual([s.id]);
        got.set(t.id, [...(got.get(t.id) ?? []), s.id]);
        if ((round + k) % 3 === 0) tasks.release(s);
        else tasks.complete(s, 'ok');
      }
      if (!any) break;
    }
    expect(tasks.list({ state: 'done', limit: 1000 }).items.map((t) => t.id).sort((a, b) => a - b)).toEqual(ids);
    for (const t of tasks.list({ limit: 1000 }).items) expect(t.attempts).toBe(got.get(t.id)!.length);

    const [x, y] = [add('x'), add('y')];
    tasks.claim(sessions[0]!);
    expect(() => store.db.prepare("UPDATE tasks SET state = 'claimed', claim_session = ? WHERE id = ?").run(sessions[0]!.id, y)).toThrow(/UNIQUE/);
    expect(tasks.get(x).claim?.session).toBe(sessions[0]!.id);
    expect(tasks.get(y).state).toBe('open');
  });
});
