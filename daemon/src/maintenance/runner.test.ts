import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { BerthError, type BerthEvent } from '@berth/client-sdk/protocol';
import { EventBus } from '../events/bus.js';
import { Store } from '../store/index.js';
import { FakeClock } from '../../test/helpers/clock.js';
import { Maintenance, type MaintenanceJob, type Scheduler } from './runner.js';

const log = pino({ level: 'silent' });

/** A job that runs until the test lets it finish. */
function gated(name: string, summary: Record<string, unknown> = { done: true }) {
  let open!: () => void;
  let fail!: (e: Error) => void;
  let calls = 0;
  const job: MaintenanceJob = {
    name,
    cron: '0 3 * * *',
    run: () => {
      calls++;
      return new Promise((resolve, reject) => {
        open = () => resolve(summary);
        fail = reject;
      });
    },
  };
  return { job, open: () => open(), fail: (e: Error) => fail(e), calls: () => calls };
}

/** A scheduler whose timers the test fires. */
function manualScheduler() {
  const fires = new Map<string, () => void>();
  const stopped: string[] = [];
  const scheduler: Scheduler = (cron, fire) => {
    fires.set(cron, fire);
    return { stop: () => void stopped.push(cron), nextRunAt: () => new Date('2030-01-01T03:00:00Z') };
  };
  return { scheduler, fires, stopped };
}

describe('Maintenance runner', () => {
  const stores: Store[] = [];
  afterEach(() => {
    for (const s of stores.splice(0)) s.close();
  });
  const setup = (jobs: MaintenanceJob[], extra: { cron?: Record<string, string>; scheduler?: Scheduler; keepRuns?: number } = {}) => {
    const store = Store.open(':memory:');
    stores.push(store);
    const bus = new EventBus();
    const events: BerthEvent[] = [];
    bus.subscribe((e) => void events.push(e));
    const clock = new FakeClock(Date.parse('2026-12-02T03:00:00Z'));
    const m = new Maintenance({ runs: store.maintenance, bus, log, clock, ...extra }, jobs);
    return { m, store, events, clock };
  };

  it('records a run with its times (the injected clock), summary and event', async () => {
    const g = gated('backup', { path: '/x', bytes: 3 });
    const { m, store, events, clock } = setup([g.job]);
    const p = m.run('backup');
    clock.advance(5000);
    g.open();
    const run = await p;
    expect(run).toEqual({ job: 'backup', startedAt: '2026-12-02T03:00:00.000Z', finishedAt: '2026-12-02T03:00:05.000Z', ok: true, summary: { path: '/x', bytes: 3 }, error: null });
    expect(store.maintenance.last('backup')).toEqual(run);
    expect(events.filter((e) => e.type === 'maintenance.run').map((e) => e.data)).toEqual([run]);
  });

  it('records a failed run with its cause and does not throw', async () => {
    const g = gated('images');
    const { m, store } = setup([g.job]);
    const p = m.run('images');
    g.fail(new BerthError('ENGINE_UNAVAILABLE', 'no engine'));
    const run = await p;
    expect(run.ok).toBe(false);
    expect(run.summary).toBeNull();
    expect(run.error).toContain('ENGINE_UNAVAILABLE');
    expect(store.maintenance.last('images')?.ok).toBe(false);
  });

  it('never runs the same job twice at once: a second run is refused, a scheduled one skipped', async () => {
    const g = gated('prune');
    const other = gated('images');
    const s = manualScheduler();
    const { m } = setup([g.job, other.job], { scheduler: s.scheduler, cron: { images: '5 5 * * *' } });
    const stop = new AbortController();
    const done = m.start(stop.signal);
    const first = m.run('prune');
    expect(() => m.run('prune')).toThrow(expect.objectContaining({ code: 'MAINTENANCE_JOB_RUNNING' }));
    s.fires.get('0 3 * * *')!(); // prune's timer while it runs: skipped
    expect(g.calls()).toBe(1);
    // Another job is not held up by it.
    const second = m.run('images');
    other.open();
    expect((await second).ok).toBe(true);
    expect(m.status().find((j) => j.job === 'prune')?.running).toBe(true);
    g.open();
    await first;
    expect(m.status().find((j) => j.job === 'prune')?.running).toBe(false);
    // Once finished, it runs again.
    const again = m.run('prune');
    g.open();
    expect((await again).ok).toBe(true);
    expect(g.calls()).toBe(2);
    stop.abort();
    await done;
    expect(s.stopped.sort()).toEqual(['0 3 * * *', '5 5 * * *']);
  });

  it('an unknown job is MAINTENANCE_JOB_UNKNOWN listing the jobs', () => {
    const { m } = setup([gated('backup').job, gated('prune').job]);
    try {
      m.run('bakup');
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(BerthError);
      expect((err as BerthError).code).toBe('MAINTENANCE_JOB_UNKNOWN');
      expect((err as BerthError).details).toEqual({ job: 'bakup', jobs: ['backup', 'prune'] });
    }
  });

  it('schedules each job on its cron (config overrides, "off" disables) and status shows last and next run', async () => {
    const a = gated('backup');
    const b = gated('images');
    const s = manualScheduler();
    const { m } = setup([a.job, b.job], { scheduler: s.scheduler, cron: { images: 'off' } });
    const stop = new AbortController();
    const done = m.start(stop.signal);
    expect([...s.fires.keys()]).toEqual(['0 3 * * *']);
    s.fires.get('0 3 * * *')!();
    a.open();
    await new Promise((r) => setImmediate(r));
    await new Promise((r) => setImmediate(r));
    const st = m.status();
    expect(st.find((j) => j.job === 'backup')).toMatchObject({ cron: '0 3 * * *', nextRunAt: '2030-01-01T03:00:00.000Z', lastRun: { ok: true } });
    expect(st.find((j) => j.job === 'images')).toMatchObject({ cron: 'off', nextRunAt: null, lastRun: null });
    stop.abort();
    await done;
  });

  it('runs atStart jobs at start, and stop() waits for runs under way', async () => {
    const g = gated('checkouts');
    const job = { ...g.job, atStart: true };
    const { m, store } = setup([job], { scheduler: manualScheduler().scheduler });
    const stop = new AbortController();
    const done = m.start(stop.signal);
    expect(g.calls()).toBe(1);
    stop.abort();
    let finished = false;
    void done.then(() => (finished = true));
    await new Promise((r) => setImmediate(r));
    expect(finished).toBe(false);
    g.open();
    await done;
    expect(store.maintenance.last('checkouts')?.ok).toBe(true);
  });

  it('keeps the last N runs per job', async () => {
    const job: MaintenanceJob = { name: 'prune', cron: '0 3 * * *', run: async () => ({ n: 1 }) };
    const other: MaintenanceJob = { name: 'images', cron: '0 3 * * *', run: async () => ({}) };
    const { m, store } = setup([job, other], { keepRuns: 3 });
    await m.run('images');
    for (let i = 0; i < 5; i++) await m.run('prune');
    expect(store.maintenance.list('prune', 100)).toHaveLength(3);
    expect(store.maintenance.list('images', 100)).toHaveLength(1);
  });
});
