import { BerthError, CONCURRENCY_POLICIES, DEFAULT_STARTING_DEADLINE_SEC, type ParamsOf, type Schedule, type ScheduleRun } from '@berth/client-sdk/protocol';
import type { EventBus } from '../events/bus.js';
import type { Clock } from '../shared/clock.js';
import { assertName } from '../shared/names.js';
import type { AgentsRepo } from '../store/agents.js';
import type { ProjectsRepo } from '../store/projects.js';
import type { ScheduleRecord, ScheduleRunRecord, SchedulesRepo } from '../store/schedules.js';
import type { SessionsRepo } from '../store/sessions.js';
import type { TasksRepo } from '../store/tasks.js';
import { assertTimeZone, nextRun, parseCron } from './cron.js';
import type { ScheduleController } from './controller.js';

export interface ScheduleServiceDeps {
  schedules: SchedulesRepo;
  projects: ProjectsRepo;
  agents: AgentsRepo;
  tasks: TasksRepo;
  sessions: SessionsRepo;
  bus: EventBus;
  clock: Clock;
  controller: () => ScheduleController;
}

/** Longest schedule name: its sessions are named `<schedule>-<n>` and a session name has at most 63 characters. */
const MAX_NAME = 48;

/** Schedule RPCs: they write desired state (the schedule row) and poke the controller, which starts the sessions. */
export class ScheduleService {
  constructor(private readonly d: ScheduleServiceDeps) {}

  private mustGet(name: string): ScheduleRecord {
    const s = this.d.schedules.get(name);
    if (!s) throw new BerthError('SCHEDULE_NOT_FOUND', `no schedule named ${name}`, { details: { name } });
    return s;
  }

  view(s: ScheduleRecord): Schedule {
    const next = s.suspended ? null : nextRun(parseCron(s.cron), s.tz ?? 'UTC', new Date(s.lastScheduledAt ?? s.createdAt));
    const history = this.d.schedules.history(s.name).map(pub);
    const active = this.d.schedules
      .open(s.name)
      .map((r) => this.d.sessions.get(r.session!.id))
      .filter((x) => x !== undefined && x.desired !== 'removed' && !['exited', 'failed', 'stopped', 'removed'].includes(x.state))
      .map((x) => ({ id: x!.id, name: x!.name }));
    return {
      name: s.name,
      project: s.project,
      agent: s.agent,
      cron: s.cron,
      tz: s.tz,
      command: s.command,
      task: s.task,
      concurrency: s.concurrency,
      startingDeadlineSec: s.startingDeadlineSec,
      suspended: s.suspended,
      lastScheduledAt: s.lastScheduledAt,
      nextRunAt: next ? next.toISOString() : null,
      active,
      createdAt: s.createdAt,
      updatedAt: s.updatedAt,
      history,
    };
  }

  private check(s: Pick<ScheduleRecord, 'project' | 'agent' | 'cron' | 'tz' | 'task' | 'concurrency'>): void {
    parseCron(s.cron);
    if (s.tz !== null) assertTimeZone(s.tz);
    assertName('agent', s.agent);
    if (!this.d.agents.get(s.agent)) throw new BerthError('AGENT_NOT_FOUND', `no agent named ${s.agent}`, { details: { name: s.agent } });
    if (!CONCURRENCY_POLICIES.includes(s.concurrency)) throw new BerthError('INVALID_PARAMS', `concurrency: one of ${CONCURRENCY_POLICIES.join(', ')}`, { details: { field: 'concurrency' } });
    if (s.task !== null) {
      const t = this.d.tasks.get(s.task);
      if (!t || t.project !== s.project) throw new BerthError('TASK_NOT_FOUND', `no task ${s.task} in project ${s.project}`, { details: { id: s.task, project: s.project } });
    }
  }

  add(p: ParamsOf<'schedules.add'>): Schedule {
    assertName('schedule', p.name);
    if (p.name.length > MAX_NAME) throw new BerthError('INVALID_NAME', `schedule names have at most ${MAX_NAME} characters (its sessions are named ${p.name}-N)`, { details: { kind: 'schedule', name: p.name } });
    assertName('project', p.project);
    if (!this.d.projects.get(p.project)) throw new BerthError('PROJECT_NOT_FOUND', `no project named ${p.project}`, { details: { name: p.project } });
    const rec = {
      name: p.name,
      project: p.project,
      agent: p.agent,
      cron: p.cron.trim(),
      tz: p.tz ?? null,
      command: p.command ?? null,
      task: p.task ?? null,
      concurrency: p.concurrency ?? 'forbid',
      startingDeadlineSec: p.startingDeadlineSec ?? DEFAULT_STARTING_DEADLINE_SEC,
      suspended: p.suspended === true,
      createdAt: this.d.clock.now().toISOString(),
    };
    this.check(rec);
    if (this.d.schedules.get(p.name)) throw new BerthError('SCHEDULE_EXISTS', `schedule ${p.name} exists`, { details: { name: p.name } });
    this.d.schedules.insert(rec);
    const schedule = this.view(this.mustGet(p.name));
    this.d.bus.publish('schedule.added', { schedule });
    this.d.controller().poke();
    return schedule;
  }

  list(p: ParamsOf<'schedules.list'>): Schedule[] {
    return this.d.schedules.list(p.project).map((s) => this.view(s));
  }

  get(name: string): Schedule {
    return this.view(this.mustGet(name));
  }

  update(p: ParamsOf<'schedules.update'>): Schedule {
    const cur = this.mustGet(p.name);
    const next: ScheduleRecord = {
      ...cur,
      ...(p.cron !== undefined ? { cron: p.cron.trim() } : {}),
      ...(p.tz !== undefined ? { tz: p.tz } : {}),
      ...(p.agent !== undefined ? { agent: p.agent } : {}),
      ...(p.command !== undefined ? { command: p.command } : {}),
      ...(p.task !== undefined ? { task: p.task } : {}),
      ...(p.concurrency !== undefined ? { concurrency: p.concurrency } : {}),
      ...(p.startingDeadlineSec !== undefined ? { startingDeadlineSec: p.startingDeadlineSec } : {}),
      ...(p.suspended !== undefined ? { suspended: p.suspended } : {}),
    };
    this.check(next);
    const now = this.d.clock.now().toISOString();
    // A new expression counts from now: the times the old one named are not made up for.
    if (next.cron !== cur.cron || next.tz !== cur.tz) next.lastScheduledAt = now;
    this.d.schedules.update(next, now);
    const schedule = this.view(this.mustGet(p.name));
    this.d.bus.publish('schedule.updated', { schedule });
    this.d.controller().poke();
    return schedule;
  }

  remove(name: string): { removed: string } {
    this.mustGet(name);
    this.d.schedules.remove(name);
    this.d.bus.publish('schedule.removed', { name });
    return { removed: name };
  }

  async run(name: string): Promise<{ schedule: Schedule; run: ScheduleRun }> {
    const run = await this.d.controller().runNow(name);
    return { schedule: this.get(name), run: pub(run) };
  }
}

function pub(r: ScheduleRunRecord): ScheduleRun {
  const { id: _, schedule: __, ...run } = r;
  return run;
}
