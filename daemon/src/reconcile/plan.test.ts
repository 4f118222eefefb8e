import { describe, expect, it } from 'vitest';
import type { ContainerObservation, ContainerSummary } from '../runtime/port.js';
import { BACKOFF_RESET_MS, crashBackoffMs, plan, resyncPlan, type PlanSession } from './plan.js';

const T0 = Date.parse('2026-11-22T10:00:00.000Z');
const iso = (ms: number) => new Date(ms).toISOString();

const session = (over: Partial<PlanSession> = {}): PlanSession => ({
  desired: 'running',
  state: 'pending',
  restartPolicy: 'on-failure',
  specHash: 'h1',
  recreate: false,
  crashCount: 0,
  nextRestartAt: null,
  handledFinish: null,
  containerId: null,
  exitCode: null,
  finishedAt: null,
  ...over,
});

const container = (over: Partial<ContainerObservation> = {}): ContainerObservation => ({
  id: 'c1',
  name: 'berth-web-1',
  labels: { 'dev.berth.spec-hash': 'h1' },
  status: 'running',
  exitCode: null,
  oomKilled: false,
  startedAt: iso(T0 - 60_000),
  finishedAt: null,
  ...over,
});

const exited = (code: number, ranMs = 1000, over: Partial<ContainerObservation> = {}) =>
  container({ status: 'exited', exitCode: code, startedAt: iso(T0 - ranMs - 10), finishedAt: iso(T0 - 10), ...over });

describe('plan', () => {
  it('makes no container for a write session until its checkout is ready (crash or early resync in between)', () => {
    expect(plan(session({ checkoutState: 'creating' }), null, T0)).toEqual({ kind: 'observe', patch: {}, requeueAfterMs: 1000 });
    expect(plan(session({ checkoutState: 'creating', recreate: true }), null, T0).kind).toBe('observe');
    expect(plan(session({ checkoutState: 'ready' }), null, T0)).toEqual({ kind: 'create' });
    // Removal still goes ahead: the reconciler's last step finishes the half-made checkout.
    expect(plan(session({ checkoutState: 'creating', desired: 'removed' }), null, T0)).toEqual({ kind: 'delete' });
  });

  it('a graceful stop waits for the agent until its deadline, then stops it; an agent that finished is recorded, never restarted', () => {
    const g = session({ desired: 'stopped', state: 'running', restartPolicy: 'always', gracefulDeadline: iso(T0 + 30_000) });
    expect(plan(g, container(), T0)).toEqual({ kind: 'observe', patch: {}, requeueAfterMs: 30_000 });
    expect(plan(g, container(), T0 + 30_000)).toEqual({ kind: 'stop' });
    const done = plan(g, exited(0), T0);
    expect(done).toMatchObject({ kind: 'observe', patch: { state: 'stopped', exitCode: 0, nextRestartAt: null } });
    // An old deadline left on a session that is stopped the usual way changes nothing.
    expect(plan(session({ desired: 'stopped', gracefulDeadline: iso(T0 - 1) }), container(), T0)).toEqual({ kind: 'stop' });
  });

  it('creates when nothing exists, then starts what was created', () => {
    expect(plan(session(), null, T0)).toEqual({ kind: 'create' });
    expect(plan(session({ state: 'creating' }), container({ status: 'created' }), T0)).toEqual({ kind: 'start', restart: false });
  });

  it('adopts a running container: records it, never touches it, even when its spec hash is stale', () => {
    for (const c of [container(), container({ labels: { 'dev.berth.spec-hash': 'old' } })]) {
      const step = plan(session({ state: 'pending' }), c, T0);
      expect(step).toMatchObject({ kind: 'observe', patch: { state: 'running', containerId: 'c1' } });
    }
  });

  it('a no-change pass is an observe with nothing new', () => {
    const c = container();
    const s = session({ state: 'running', containerId: 'c1' });
    const step = plan(s, c, T0);
    expect(step.kind).toBe('observe');
    if (step.kind !== 'observe') return;
    const changed = Object.entries(step.patch).filter(([k, v]) => (s as unknown as Record<string, unknown>)[k] !== v && !(k === 'startedAt' || k === 'errorCode' || k === 'errorMessage'));
    expect(changed).toEqual([]);
  });

  it('stops a live container whose session wants it stopped, and records stopped once it exited', () => {
    expect(plan(session({ desired: 'stopped', state: 'running' }), container(), T0)).toEqual({ kind: 'stop' });
    const step = plan(session({ desired: 'stopped', state: 'stopping' }), exited(143), T0);
    expect(step).toMatchObject({ kind: 'observe', patch: { state: 'stopped', exitCode: 143, handledFinish: iso(T0 - 10), nextRestartAt: null } });
  });

  it('an exit observed after a stop is never a crash, even when desired flips back later', () => {
    const c = exited(137);
    const stopped = plan(session({ desired: 'stopped' }), c, T0);
    if (stopped.kind !== 'observe') throw new Error('expected observe');
    // The session later wants to run again but has not asked for a fresh container: the old exit is handled.
    const after = plan(session({ restartPolicy: 'always', handledFinish: stopped.patch.handledFinish!, nextRestartAt: null }), c, T0);
    expect(after).toEqual({ kind: 'observe', patch: {} });
  });

  it('removes, then deletes, a session that is to be removed', () => {
    expect(plan(session({ desired: 'removed' }), container(), T0)).toEqual({ kind: 'remove' });
    expect(plan(session({ desired: 'removed' }), null, T0)).toEqual({ kind: 'delete' });
  });

  it('recreates on request: remove the container, then clear the flag', () => {
    expect(plan(session({ recreate: true }), container(), T0)).toMatchObject({ kind: 'remove', thenPatch: { recreate: false } });
    expect(plan(session({ recreate: true }), null, T0)).toMatchObject({ kind: 'observe', patch: { recreate: false, state: 'pending' } });
  });

  it('recreates a stopped container whose spec hash differs before starting it again', () => {
    const c = exited(1, 1000, { labels: { 'dev.berth.spec-hash': 'old' } });
    const s = session({ handledFinish: c.finishedAt, nextRestartAt: iso(T0 - 1), crashCount: 1 });
    expect(plan(s, c, T0)).toEqual({ kind: 'remove' });
    expect(plan(session(), container({ status: 'created', labels: { 'dev.berth.spec-hash': 'old' } }), T0)).toEqual({ kind: 'remove' });
  });

  it('restart policies: exit 0 under on-failure is done; failure restarts; never never; always always', () => {
    expect(plan(session(), exited(0), T0)).toMatchObject({ kind: 'observe', patch: { state: 'exited', exitCode: 0, nextRestartAt: null } });
    expect(plan(session(), exited(2), T0)).toMatchObject({ kind: 'observe', patch: { crashCount: 1, nextRestartAt: iso(T0 + 10_000) }, requeueAfterMs: 10_000 });
    expect(plan(session({ restartPolicy: 'never' }), exited(2), T0)).toMatchObject({ patch: { nextRestartAt: null } });
    expect(plan(session({ restartPolicy: 'always' }), exited(0), T0)).toMatchObject({ patch: { crashCount: 1 } });
    expect(plan(session(), exited(0, 1000, { oomKilled: true }), T0)).toMatchObject({ patch: { crashCount: 1 } });
  });

  it('waits out the backoff, then restarts the same container', () => {
    const c = exited(1);
    const s = session({ state: 'exited', handledFinish: c.finishedAt, crashCount: 1, nextRestartAt: iso(T0 + 10_000) });
    expect(plan(s, c, T0 + 4000)).toEqual({ kind: 'observe', patch: {}, requeueAfterMs: 6000 });
    expect(plan(s, c, T0 + 10_000)).toEqual({ kind: 'start', restart: true });
  });

  it('backoff doubles from 10 s to a 5 min cap, and resets after 10 min of clean running', () => {
    expect([1, 2, 3, 4, 5, 6, 7, 20].map(crashBackoffMs)).toEqual([10_000, 20_000, 40_000, 80_000, 160_000, 300_000, 300_000, 300_000]);
    expect(plan(session({ crashCount: 6 }), exited(1, 1000), T0)).toMatchObject({ patch: { crashCount: 7 }, requeueAfterMs: 300_000 });
    expect(plan(session({ crashCount: 6 }), exited(1, BACKOFF_RESET_MS), T0)).toMatchObject({ patch: { crashCount: 1 }, requeueAfterMs: 10_000 });
    // Running long enough forgets earlier crashes.
    const long = container({ startedAt: iso(T0 - BACKOFF_RESET_MS) });
    expect(plan(session({ crashCount: 4, state: 'running' }), long, T0)).toMatchObject({ patch: { crashCount: 0 } });
    const short = container({ startedAt: iso(T0 - 60_000) });
    expect(plan(session({ crashCount: 4, state: 'running' }), short, T0)).toMatchObject({ requeueAfterMs: BACKOFF_RESET_MS - 60_000 });
  });

  it('leaves a failed session alone until the user acts', () => {
    expect(plan(session({ state: 'failed' }), null, T0)).toEqual({ kind: 'observe', patch: {} });
    expect(plan(session({ state: 'failed' }), container({ status: 'created' }), T0)).toEqual({ kind: 'observe', patch: {} });
  });
});

describe('resyncPlan', () => {
  const c = (id: string, session: string | null, status: ContainerSummary['status']): ContainerSummary => ({
    id,
    name: `berth-${id}`,
    labels: session ? { 'dev.berth.session': session } : {},
    status,
  });
  const exists = (known: string[]) => (ids: string[]) => new Set(ids.filter((i) => known.includes(i)));

  it('leaves settled sessions whose container the listing shows as recorded, however many there are', () => {
    const recorded = Array.from({ length: 10_000 }, (_, n) => ({ id: `s${n}`, state: n % 2 ? ('running' as const) : ('exited' as const), containerId: `c${n}` }));
    const containers = recorded.map((r) => c(r.containerId, r.id, r.state === 'running' ? 'running' : 'exited'));
    const r = resyncPlan({ unsettled: [], recorded, containers, exists: exists(recorded.map((x) => x.id)) });
    expect([...r.queue]).toEqual([]);
    expect(r.orphans).toEqual([]);
  });

  it('queues the unsettled, and settled ones whose container is gone, changed state or belongs to another', () => {
    const r = resyncPlan({
      unsettled: ['pending1'],
      recorded: [
        { id: 'gone', state: 'exited', containerId: 'c-gone' },
        { id: 'died', state: 'running', containerId: 'c-died' },
        { id: 'revived', state: 'stopped', containerId: 'c-revived' },
        { id: 'paused', state: 'running', containerId: 'c-paused' },
        { id: 'swapped', state: 'exited', containerId: 'c-swapped' },
        { id: 'same', state: 'exited', containerId: 'c-same' },
      ],
      containers: [c('c-died', 'died', 'exited'), c('c-revived', 'revived', 'running'), c('c-paused', 'paused', 'paused'), c('c-swapped', 'other', 'exited'), c('c-same', 'same', 'dead')],
      exists: exists(['other']),
    });
    expect([...r.queue].sort()).toEqual(['died', 'gone', 'pending1', 'revived', 'swapped']);
  });

  it("queues a session for a container its row does not record, and calls containers of no session orphans", () => {
    const r = resyncPlan({
      unsettled: [],
      recorded: [],
      containers: [c('c1', 'known', 'running'), c('c2', 'deleted', 'exited'), c('c3', null, 'running')],
      exists: exists(['known']),
    });
    expect([...r.queue]).toEqual(['known']);
    expect(r.orphans.map((o) => o.id)).toEqual(['c2', 'c3']);
  });
});
