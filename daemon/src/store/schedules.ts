import { SCHEDULE_HISTORY, type ConcurrencyPolicy, type Schedule, type ScheduleOutcome, type ScheduleRun } from '@berth/client-sdk/protocol';
import type { Db } from './db.js';

/** A schedule as stored: its desired state and the latest time it acted on (what the view derives is not kept). */
export type ScheduleRecord = Omit<Schedule, 'nextRunAt' | 'active' | 'history'> & {
  /** Sessions started so far: the next is named <name>-<runs+1>. */
  runs: number;
};

export interface ScheduleRunRecord extends ScheduleRun {
  id: number;
  schedule: string;
}

interface Row {
  name: string;
  project: string;
  agent: string;
  cron: string;
  tz: string | null;
  command: string | null;
  task_id: number | null;
  concurrency: ConcurrencyPolicy;
  starting_deadline_sec: number;
  suspended: number;
  last_scheduled_at: string | null;
  runs: number;
  created_at: string;
  updated_at: string;
}

interface RunRow {
  id: number;
  schedule: string;
  scheduled_at: string;
  started_at: string;
  manual: number;
  outcome: ScheduleOutcome;
  reason: string | null;
  session_id: string | null;
  session_name: string | null;
  final_state: string | null;
  exit_code: number | null;
}

const toRecord = (r: Row): ScheduleRecord => ({
  name: r.name,
  project: r.project,
  agent: r.agent,
  cron: r.cron,
  tz: r.tz,
  command: r.command === null ? null : (JSON.parse(r.command) as string[]),
  task: r.task_id,
  concurrency: r.concurrency,
  startingDeadlineSec: r.starting_deadline_sec,
  suspended: r.suspended === 1,
  lastScheduledAt: r.last_scheduled_at,
  runs: r.runs,
  createdAt: r.created_at,
  updatedAt: r.updated_at,
});

const toRun = (r: RunRow): ScheduleRunRecord => ({
  id: r.id,
  schedule: r.schedule,
  scheduledAt: r.scheduled_at,
  startedAt: r.started_at,
  manual: r.manual === 1,
  outcome: r.outcome,
  reason: r.reason,
  session: r.session_id ? { id: r.session_id, name: r.session_name ?? '' } : null,
  final: r.final_state ? { state: r.final_state, exitCode: r.exit_code } : null,
});

export type ScheduleRunInput = Omit<ScheduleRunRecord, 'id' | 'final'>;

/** Schedules (desired state) and the history of their runs, the last SCHEDULE_HISTORY of each. */
export class SchedulesRepo {
  private readonly stmts;

  constructor(private readonly db: Db) {
    // Read on every controller pass: prepared once.
    this.stmts = {
      get: db.prepare<[string], Row>('SELECT * FROM schedules WHERE name = ?'),
      all: db.prepare<[], Row>('SELECT * FROM schedules ORDER BY name'),
      ofProject: db.prepare<[string], Row>('SELECT * FROM schedules WHERE project = ? ORDER BY name'),
      open: db.prepare<[string], RunRow>('SELECT * FROM schedule_runs WHERE schedule = ? AND session_id IS NOT NULL AND final_state IS NULL ORDER BY id'),
      history: db.prepare<[string, number], RunRow>('SELECT * FROM schedule_runs WHERE schedule = ? ORDER BY id DESC LIMIT ?'),
      insertRun: db.prepare(
        `INSERT INTO schedule_runs (schedule, scheduled_at, started_at, manual, outcome, reason, session_id, session_name)
         VALUES (@schedule, @scheduledAt, @startedAt, @manual, @outcome, @reason, @sessionId, @sessionName)`,
      ),
      trim: db.prepare<[string, string, number]>(
        `DELETE FROM schedule_runs WHERE schedule = ? AND id < (SELECT min(id) FROM (SELECT id FROM schedule_runs WHERE schedule = ? ORDER BY id DESC LIMIT ?))
           AND (session_id IS NULL OR final_state IS NOT NULL)`,
      ),
      scheduled: db.prepare<[{ at: string; now: string; name: string }]>(
        'UPDATE schedules SET last_scheduled_at = max(coalesce(last_scheduled_at, @at), @at), updated_at = @now WHERE name = @name',
      ),
    };
  }

  get(name: string): ScheduleRecord | undefined {
    const r = this.stmts.get.get(name);
    return r && toRecord(r);
  }

  list(project?: string): ScheduleRecord[] {
    return (project ? this.stmts.ofProject.all(project) : this.stmts.all.all()).map(toRecord);
  }

  insert(s: Omit<ScheduleRecord, 'lastScheduledAt' | 'runs' | 'updatedAt'>): void {
    this.db
      .prepare(
        `INSERT INTO schedules (name, project, agent, cron, tz, command, task_id, concurrency, starting_deadline_sec, suspended, created_at, updated_at)
         VALUES (@name, @project, @agent, @cron, @tz, @command, @task, @concurrency, @startingDeadlineSec, @suspended, @createdAt, @createdAt)`,
      )
      .run({ ...s, command: s.command === null ? null : JSON.stringify(s.command), suspended: s.suspended ? 1 : 0 });
  }

  /** Writes the whole editable part of a schedule; `lastScheduledAt` only when given (resuming moves it to now). */
  update(s: ScheduleRecord, now: string): void {
    this.db
      .prepare(
        `UPDATE schedules SET agent = @agent, cron = @cron, tz = @tz, command = @command, task_id = @task, concurrency = @concurrency,
           starting_deadline_sec = @startingDeadlineSec, suspended = @suspended, last_scheduled_at = @lastScheduledAt, updated_at = @now WHERE name = @name`,
      )
      .run({ ...s, command: s.command === null ? null : JSON.stringify(s.command), suspended: s.suspended ? 1 : 0, now });
  }

  remove(name: string): number {
    return this.db.prepare('DELETE FROM schedules WHERE name = ?').run(name).changes;
  }

  /**
   * Records what became of a scheduled time and moves `last_scheduled_at` to it, together (one
   * transaction, the caller's when there is one): a restart never acts on the same time twice.
   */
  record(run: ScheduleRunInput, opts: { countRun?: boolean } = {}): number {
    const tx = this.db.transaction(() => {
      const id = Number(
        this.stmts.insertRun.run({
          schedule: run.schedule,
          scheduledAt: run.scheduledAt,
          startedAt: run.startedAt,
          manual: run.manual ? 1 : 0,
          outcome: run.outcome,
          reason: run.reason,
          sessionId: run.session?.id ?? null,
          sessionName: run.session?.name ?? null,
        }).lastInsertRowid,
      );
      if (!run.manual) this.stmts.scheduled.run({ at: run.scheduledAt, now: run.startedAt, name: run.schedule });
      if (opts.countRun) this.db.prepare('UPDATE schedules SET runs = runs + 1 WHERE name = ?').run(run.schedule);
      this.stmts.trim.run(run.schedule, run.schedule, SCHEDULE_HISTORY);
      return id;
    });
    return tx();
  }

  /** Runs whose session has not been seen ending. */
  open(schedule: string): ScheduleRunRecord[] {
    return this.stmts.open.all(schedule).map(toRun);
  }

  history(schedule: string): ScheduleRunRecord[] {
    return this.stmts.history.all(schedule, SCHEDULE_HISTORY).map(toRun);
  }

  /** The run's session ended (or went): its final state, and `replaced` when the next run stopped it. */
  finish(id: number, final: { state: string; exitCode: number | null }, failed?: string): void {
    this.db
      .prepare("UPDATE schedule_runs SET final_state = ?, exit_code = ?, outcome = CASE WHEN ? IS NULL THEN outcome ELSE 'failed' END, reason = coalesce(?, reason) WHERE id = ?")
      .run(final.state, final.exitCode, failed ?? null, failed ?? null, id);
  }

  markReplaced(id: number): void {
    this.db.prepare("UPDATE schedule_runs SET outcome = 'replaced' WHERE id = ?").run(id);
  }
}
