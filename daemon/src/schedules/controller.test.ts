import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BerthError, type ParamsOf, type Session, type SessionState } from '@berth/client-sdk/protocol';
import { EventBus } from '../events/bus.js';
import type { Clock } from '../shared/clock.js';
import { Store } from '../store/index.js';
import { ScheduleController } from './controller.js';

/** A clock the test sets; the controller's loop is not run here (reconcile is called directly). */
class SetClock implements Clock {
  constructor(public t: number) {}
  now(): Date {
    return new Date(this.t);
  }
  sleep(): Promise<void> {
    return new Promise(() => {});
  }
}

const T0 = Date.parse('2026-03-02T10:00:00Z');
const MIN = 60_000;

/** The controller's decisions over a real store and a fake session service (no engine). */
describe('ScheduleController', () => {
  let dir: string;
  let store: Store;
  let clock: SetClock;
  let ctl: ScheduleController;
  const sessions = new Map<string, { name: string; state: SessionState; desired: 'running' | 'removed'; exitCode: number | null }>();
  let started: ParamsOf<'sessions.start'>[];
  let stopped: string[];
  let removed: string[];
  let failNext: BerthError | null;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'bsc-'));
    store = Store.open(join(dir, 'berth.db'));
    clock = new SetClock(T0);
    sessions.clear();
    started = [];
    stopped = [];
    removed = [];
    failNext = null;
    const ts = new Date(T0).toISOString();
    store.projects.insert({ name: 'web', path: dir, network: null, gitUrl: null, branch: null, sshKeyPath: null, worktrees: 'always', defaultImage: null, createdAt: ts, updatedAt: ts });
    store.agents.upsert({ name: 'a', image: null, command: ['run', '{{task.title}}'], env: {}, role: null, readOnly: true, limits: {}, restartPolicy: 'never', network: null, readOnlyRootfs: false, capAdd: [], secrets: {}, createdAt: ts, updatedAt: ts });
    let n = 0;
    ctl = new ScheduleController({
      schedules: store.schedules,
      sessions: { get: (id) => sessions.get(id), byName: (name) => [...sessions.values()].find((s) => s.name === name) },
      agents: store.agents,
      task: () => null,
      bus: new EventBus(),
      clock,
      log: pino({ level: 'silent' }),
      work: {
        start: async (p, o) => {
          if (failNext) throw failNext;
          const id = `s${++n}`;
          sessions.set(id, { name: p.name!, state: 'running', desired: 'running', exitCode: null });
          o.onInsert?.({ id, name: p.name!, createdAt: clock.now().toISOString() } as never);
          started.push(p);
          return { id } as Session;
        },
        stop: async (id) => {
          stopped.push(id);
          sessions.get(id)!.state = 'stopped';
        },
        remove: async (id) => {
          if (id === 's2') throw new BerthError('DIRTY_CHECKOUT', 'uncommitted changes');
          removed.push(id);
          sessions.get(id)!.desired = 'removed';
        },
      },
    });
  });

  afterEach(() => {
    store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const add = (name: string, extra: Partial<{ concurrency: 'forbid' | 'allow' | 'replace'; startingDeadlineSec: number; cron: string }> = {}) =>
    store.schedules.insert({ name, project: 'web', agent: 'a', cron: extra.cron ?? '*/10 * * * *', tz: null, command: null, task: null, concurrency: extra.concurrency ?? 'forbid', startingDeadlineSec: extra.startingDeadlineSec ?? 600, suspended: false, createdAt: new Date(clock.t).toISOString() });
  const history = (name: string) => store.schedules.history(name).map((r) => [r.scheduledAt.slice(11, 16), r.outcome, r.session?.name ?? null]);

  it('does nothing before the due minute, starts one session at it, and says when to look next', async () => {
    add('x');
    clock.t = T0 + 9 * MIN + 59_000;
    expect(await ctl.reconcile('x')).toBe(T0 + 10 * MIN);
    expect(started).toHaveLength(0);
    clock.t = T0 + 10 * MIN + 1000;
    expect(await ctl.reconcile('x')).toBe(T0 + 20 * MIN);
    expect(await ctl.reconcile('x')).toBe(T0 + 20 * MIN);
    expect(history('x')).toEqual([['10:10', 'started', 'x-1']]);
    expect(started[0]).toMatchObject({ project: 'web', agent: 'a', name: 'x-1', restartPolicy: 'never', env: { BERTH_SCHEDULE: 'x' } });
  });

  it('forbid skips while the previous run runs, and starts again once it ended', async () => {
    add('x');
    clock.t = T0 + 10 * MIN;
    await ctl.reconcile('x');
    clock.t = T0 + 20 * MIN;
    await ctl.reconcile('x');
    sessions.get('s1')!.state = 'exited';
    sessions.get('s1')!.exitCode = 0;
    clock.t = T0 + 30 * MIN;
    await ctl.reconcile('x');
    expect(history('x')).toEqual([
      ['10:30', 'started', 'x-2'],
      ['10:20', 'skipped', null],
      ['10:10', 'started', 'x-1'],
    ]);
    expect(store.schedules.history('x')[2]!.final).toEqual({ state: 'exited', exitCode: 0 });
  });

  it('allow starts alongside; replace stops the running one first', async () => {
    add('al', { concurrency: 'allow' });
    add('re', { concurrency: 'replace' });
    for (const t of [10, 20]) {
      clock.t = T0 + t * MIN;
      await ctl.reconcile('al');
      await ctl.reconcile('re');
    }
    expect(history('al')).toEqual([
      ['10:20', 'started', 'al-2'],
      ['10:10', 'started', 'al-1'],
    ]);
    expect(history('re')).toEqual([
      ['10:20', 'started', 're-2'],
      ['10:10', 'replaced', 're-1'],
    ]);
    expect(stopped).toEqual(['s2']);
  });

  it('after downtime starts only the latest time within the deadline, and records one past it missed', async () => {
    add('x', { startingDeadlineSec: 300 });
    clock.t = T0 + 34 * MIN;
    await ctl.reconcile('x');
    expect(history('x')).toEqual([['10:30', 'started', 'x-1']]);
    sessions.get('s1')!.state = 'exited';
    clock.t = T0 + 58 * MIN;
    await ctl.reconcile('x');
    expect(history('x')[0]).toEqual(['10:50', 'missed', null]);
    // Neither time is acted on again.
    await ctl.reconcile('x');
    expect(store.schedules.history('x')).toHaveLength(2);
    expect(store.schedules.get('x')!.lastScheduledAt).toBe(new Date(T0 + 50 * MIN).toISOString());
  });

  it('records a start that failed, and moves on', async () => {
    add('x');
    failNext = new BerthError('AGENT_NOT_FOUND', 'no agent named a');
    clock.t = T0 + 10 * MIN;
    await ctl.reconcile('x');
    expect(store.schedules.history('x')[0]).toMatchObject({ outcome: 'failed', reason: 'AGENT_NOT_FOUND: no agent named a', session: null });
    expect(store.schedules.get('x')!.lastScheduledAt).toBe(new Date(T0 + 10 * MIN).toISOString());
  });

  it('skips a session name taken by someone else, and keeps 20 runs of history', async () => {
    add('x', { concurrency: 'allow', cron: '* * * * *' });
    sessions.set('other', { name: 'x-1', state: 'running', desired: 'running', exitCode: null });
    for (let m = 1; m <= 25; m++) {
      clock.t = T0 + m * MIN;
      await ctl.reconcile('x');
    }
    expect(started[0]!.name).toBe('x-2');
    const h = store.schedules.history('x');
    expect(h).toHaveLength(20);
    expect(h[0]!.session!.name).toBe('x-26');
  });

  it('removes the sessions of ended runs but the last three, leaving one with uncommitted work', async () => {
    add('x', { cron: '* * * * *' });
    for (let m = 1; m <= 7; m++) {
      clock.t = T0 + m * MIN;
      await ctl.reconcile('x');
      for (const s of sessions.values()) if (s.state === 'running') s.state = 'exited';
    }
    clock.t = T0 + 7 * MIN + 30_000;
    await ctl.reconcile('x');
    // Runs 1-7 ended; 5, 6, 7 stay; s2 refused (dirty) and is not tried again.
    expect([...removed].sort()).toEqual(['s1', 's3', 's4']);
    await ctl.reconcile('x');
    expect([...removed].sort()).toEqual(['s1', 's3', 's4']);
  });
});
