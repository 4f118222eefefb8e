import { BerthError, TASK_ID_ENV, type ParamsOf, type ScheduleRun, type Session, type Task } from '@berth/client-sdk/protocol';
import type { EventBus } from '../events/bus.js';
import type { Logger } from '../log.js';
import { promptOf, substitute } from '../pools/prompt.js';
import type { Clock } from '../shared/clock.js';
import type { AgentsRepo } from '../store/agents.js';
import type { ScheduleRecord, ScheduleRunRecord, SchedulesRepo } from '../store/schedules.js';
import type { SessionRecord } from '../store/sessions.js';

type SessionView = Pick<SessionRecord, 'state' | 'desired' | 'exitCode'>;
import type { StartOptions } from '../sessions/service.js';
import { lastRunBetween, nextRun, parseCron } from './cron.js';

/** What the schedule controller needs of sessions (SessionService). */
export interface ScheduleSessions {
  start(p: ParamsOf<'sessions.start'>, opts: StartOptions): Promise<Session>;
  stop(id: string): Promise<unknown>;
  /** Removes an ended session as `berth rm` does without --force (one with uncommitted work is refused). */
  remove(id: string): Promise<unknown>;
}

export interface ScheduleControllerDeps {
  schedules: SchedulesRepo;
  /** The sessions the runs started, as the store has them now. */
  sessions: { get(id: string): SessionView | undefined; byName(name: string): unknown };
  agents: Pick<AgentsRepo, 'get'>;
  /** The task a schedule hands its runs, as the public view (null when it is gone). */
  task: (id: number) => Task | null;
  work: ScheduleSessions;
  bus: EventBus;
  clock: Clock;
  log: Logger;
}

/** A pass runs at least this often, so a clock that jumps (suspend, NTP) is caught up on within it. */
const MAX_SLEEP_MS = 60_000;
/**
 * How far back a pass looks for the latest due time after downtime. Older times are past any
 * starting deadline berth accepts (at most a day): they are neither started nor listed one by one.
 */
export const LOOKBACK_MS = 8 * 86_400_000;

const MAX_REASON = 2000;
/** Sessions of this many ended runs are kept (like a CronJob's history limits); older ones are removed. */
export const KEEP_ENDED_SESSIONS = 3;

const ended = (s: SessionView) => s.state === 'exited' || s.state === 'failed' || s.state === 'stopped' || s.state === 'removed';

/**
 * Starts each schedule's sessions at the times its cron expression names, on the injected clock,
 * level-triggered: every pass re-reads every schedule and acts on the latest time in
 * (last_scheduled_at, now]. The run row and last_scheduled_at are written together, in the
 * transaction that inserts the session, so a restart (kill -9 included) never starts a time twice
 * and a time berthd was down for is seen on return: started if within the starting deadline,
 * else recorded `missed` (Kubernetes CronJob's startingDeadlineSeconds).
 */
export class ScheduleController {
  private wake: (() => void) | null = null;
  private dirty = false;
  /** Sessions whose removal was refused (uncommitted work): left to their owner, not tried again. */
  private readonly kept = new Set<string>();
  /** Serializes passes and `run now`: two never start the same schedule's sessions at once. */
  private busy: Promise<unknown> = Promise.resolve();

  constructor(private readonly d: ScheduleControllerDeps) {
    d.bus.subscribe((e) => {
      if (e.type === 'session.state' && (e.data.session.state === 'exited' || e.data.session.state === 'failed' || e.data.session.state === 'stopped')) this.poke();
      if (e.type === 'session.removed') this.poke();
    });
  }

  poke(): void {
    this.dirty = true;
    this.wake?.();
  }

  async start(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      this.dirty = false;
      let wakeAt = this.d.clock.now().getTime() + MAX_SLEEP_MS;
      await this.exclusive(async () => {
        for (const s of this.d.schedules.list()) {
          if (signal.aborted) return;
          try {
            const next = await this.reconcile(s.name);
            if (next !== null) wakeAt = Math.min(wakeAt, next);
          } catch (err) {
            this.d.log.error({ schedule: s.name, err }, `Failed reconciling schedule ${s.name}`);
          }
        }
      });
      if (this.dirty || signal.aborted) continue;
      const wait = new AbortController();
      const stop = () => wait.abort();
      signal.addEventListener('abort', stop, { once: true });
      this.wake = stop;
      await this.d.clock.sleep(Math.max(0, wakeAt - this.d.clock.now().getTime()), wait.signal);
      this.wake = null;
      signal.removeEventListener('abort', stop);
    }
  }

  private exclusive<T>(f: () => Promise<T>): Promise<T> {
    const p = this.busy.then(f, f);
    this.busy = p.catch(() => {});
    return p;
  }

  /** Starts a run of `name` now, by hand (the concurrency policy applies; last_scheduled_at stays). */
  runNow(name: string): Promise<ScheduleRunRecord> {
    return this.exclusive(async () => {
      const s = this.d.schedules.get(name);
      if (!s) throw new BerthError('SCHEDULE_NOT_FOUND', `no schedule named ${name}`, { details: { name } });
      const active = this.settle(s);
      return this.fire(s, this.d.clock.now(), active, true, null);
    });
  }

  /** One pass over one schedule; when it should be looked at next (ms since the epoch), or null. */
  async reconcile(name: string): Promise<number | null> {
    const s = this.d.schedules.get(name);
    if (!s) return null;
    const active = this.settle(s);
    if (s.suspended) return null;
    const spec = parseCron(s.cron);
    const tz = s.tz ?? 'UTC';
    const now = this.d.clock.now();
    const from = new Date(s.lastScheduledAt ?? s.createdAt);
    const due = lastRunBetween(spec, tz, from, now, LOOKBACK_MS);
    if (due) {
      const lateSec = Math.floor((now.getTime() - due.at.getTime()) / 1000);
      if (lateSec > s.startingDeadlineSec) {
        this.record(s, {
          scheduledAt: due.at.toISOString(),
          outcome: 'missed',
          reason: `berthd looked ${lateSec}s after the scheduled time, past the starting deadline of ${s.startingDeadlineSec}s (was it down?)${due.earlier ? '; earlier times were missed too' : ''}`,
        });
      } else {
        await this.fire(s, due.at, active, false, due.earlier ? 'earlier times were passed over: only the latest starts' : null);
      }
    }
    await this.prune(s);
    const after = this.d.schedules.get(name);
    if (!after) return null;
    const next = nextRun(spec, tz, new Date(Math.max(Date.parse(after.lastScheduledAt ?? after.createdAt), now.getTime() - LOOKBACK_MS)));
    return next ? next.getTime() : null;
  }

  /** Removes the sessions of ended runs but the last KEEP_ENDED_SESSIONS. */
  private async prune(s: ScheduleRecord): Promise<void> {
    const ended = this.d.schedules.history(s.name).filter((r) => r.session && r.final);
    for (const run of ended.slice(KEEP_ENDED_SESSIONS)) {
      const id = run.session!.id;
      const rec = this.d.sessions.get(id);
      if (!rec || rec.desired === 'removed' || this.kept.has(id)) continue;
      try {
        await this.d.work.remove(id);
        this.d.log.info({ schedule: s.name, session: run.session!.name }, `Schedule ${s.name}: removed ${run.session!.name} (an older run)`);
      } catch (err) {
        this.kept.add(id);
        this.d.log.info({ schedule: s.name, session: run.session!.name, err: (err as Error).message }, `Schedule ${s.name}: keeping ${run.session!.name}`);
      }
    }
  }

  /** Notes the runs whose session ended (or went); the sessions of this schedule that still run. */
  private settle(s: ScheduleRecord): ScheduleRunRecord[] {
    const active: ScheduleRunRecord[] = [];
    for (const run of this.d.schedules.open(s.name)) {
      const rec = this.d.sessions.get(run.session!.id);
      if (!rec || rec.desired === 'removed') this.d.schedules.finish(run.id, { state: 'removed', exitCode: rec?.exitCode ?? null });
      else if (ended(rec)) this.d.schedules.finish(run.id, { state: rec.state, exitCode: rec.exitCode });
      else active.push(run);
    }
    return active;
  }

  private record(s: ScheduleRecord, r: Pick<ScheduleRun, 'scheduledAt' | 'outcome' | 'reason'> & { manual?: boolean }): ScheduleRunRecord {
    const run = { schedule: s.name, scheduledAt: r.scheduledAt, startedAt: this.d.clock.now().toISOString(), manual: r.manual === true, outcome: r.outcome, reason: r.reason, session: null };
    const id = this.d.schedules.record(run);
    this.publish(s, { ...run, id, final: null });
    this.d.log.info({ schedule: s.name, scheduledAt: r.scheduledAt, outcome: r.outcome }, `Schedule ${s.name}: ${r.outcome} the run of ${r.scheduledAt}${r.reason ? `: ${r.reason}` : ''}`);
    return { ...run, id, final: null };
  }

  private publish(s: ScheduleRecord, run: ScheduleRunRecord): void {
    const { id: _, schedule: __, ...pub } = run;
    this.d.bus.publish('schedule.run', { schedule: s.name, run: pub });
  }

  /** Acts on one scheduled time with the schedule's concurrency policy. */
  private async fire(s: ScheduleRecord, at: Date, active: ScheduleRunRecord[], manual: boolean, note: string | null): Promise<ScheduleRunRecord> {
    const scheduledAt = at.toISOString();
    if (active.length && s.concurrency === 'forbid') {
      return this.record(s, { scheduledAt, manual, outcome: 'skipped', reason: `forbid: ${active.map((r) => r.session!.name).join(', ')} still runs` });
    }
    if (active.length && s.concurrency === 'replace') {
      for (const run of active) {
        await this.d.work.stop(run.session!.id);
        this.d.schedules.markReplaced(run.id);
        this.d.log.info({ schedule: s.name, session: run.session!.name }, `Schedule ${s.name}: stopped ${run.session!.name} (replace)`);
      }
    }
    const name = this.freeName(s);
    const agent = this.d.agents.get(s.agent);
    const task = s.task === null ? null : this.d.task(s.task);
    if (!agent) return this.record(s, { scheduledAt, manual, outcome: 'failed', reason: `agent ${s.agent} is gone` });
    if (s.task !== null && !task) return this.record(s, { scheduledAt, manual, outcome: 'failed', reason: `task ${s.task} is gone` });
    const base = s.command ?? agent.command;
    const params: ParamsOf<'sessions.start'> = {
      project: s.project,
      agent: s.agent,
      name,
      command: task ? base.map((a) => substitute(a, task)) : base,
      env: { BERTH_SCHEDULE: s.name, BERTH_SCHEDULED_AT: scheduledAt, ...(task ? { [TASK_ID_ENV]: String(task.id), BERTH_TASK_TITLE: task.title, BERTH_TASK_PROMPT: promptOf(task) } : {}) },
      restartPolicy: 'never',
    };
    let recorded: ScheduleRunRecord | null = null;
    try {
      await this.d.work.start(params, {
        onInsert: (rec) => {
          const run = { schedule: s.name, scheduledAt, startedAt: this.d.clock.now().toISOString(), manual, outcome: 'started' as const, reason: note, session: { id: rec.id, name: rec.name } };
          recorded = { ...run, id: this.d.schedules.record(run, { countRun: true }), final: null };
        },
      });
    } catch (err) {
      // Kept in the history: a message of any length (a path, git's output) is cut.
      const reason = (err instanceof BerthError ? `${err.code}: ${err.message}` : String((err as Error)?.message ?? err)).slice(0, MAX_REASON);
      this.d.log.warn({ schedule: s.name, session: name, err: reason }, `Schedule ${s.name}: could not start ${name}`);
      if (!recorded) return this.record(s, { scheduledAt, manual, outcome: 'failed', reason });
      const failed: ScheduleRunRecord = recorded;
      // The session row was made (and the time recorded) but the start failed after: the run failed.
      const rec = this.d.sessions.get(failed.session!.id);
      this.d.schedules.finish(failed.id, { state: rec?.state ?? 'removed', exitCode: rec?.exitCode ?? null }, reason);
      const out = { ...failed, outcome: 'failed' as const, reason, final: { state: rec?.state ?? 'removed', exitCode: rec?.exitCode ?? null } };
      this.publish(s, out);
      return out;
    }
    const started: ScheduleRunRecord = recorded!;
    this.publish(s, started);
    this.d.log.info({ schedule: s.name, session: name, scheduledAt }, `Schedule ${s.name}: started ${name} for ${scheduledAt}`);
    return started;
  }

  /** `<schedule>-<n>`, n one more than the runs so far, or the next n no session has. */
  private freeName(s: ScheduleRecord): string {
    for (let n = s.runs + 1; ; n++) {
      const name = `${s.name}-${n}`;
      if (!this.d.sessions.byName(name)) return name;
    }
  }
}
