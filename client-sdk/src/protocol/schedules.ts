/**
 * Schedules: sessions started on a cron schedule, modelled on Kubernetes CronJob (concurrency
 * policy, starting deadline, a history of the last runs).
 */

export type ConcurrencyPolicy = 'forbid' | 'allow' | 'replace';
export const CONCURRENCY_POLICIES = ['forbid', 'allow', 'replace'] as const satisfies readonly ConcurrencyPolicy[];

/** A run whose scheduled time is further back than this when berthd looks (after downtime) is recorded `missed`. */
export const DEFAULT_STARTING_DEADLINE_SEC = 600;
/** Runs kept in a schedule's history. */
export const SCHEDULE_HISTORY = 20;

/**
 * What became of one scheduled time: `started` (a session was started), `skipped` (forbid: the
 * previous run still ran), `missed` (berthd saw it too late, past the starting deadline), `failed`
 * (the session could not be started: `reason`). A run that was `started` and then stopped by the
 * next one (replace) becomes `replaced`.
 */
export type ScheduleOutcome = 'started' | 'skipped' | 'replaced' | 'missed' | 'failed';

export interface ScheduleRun {
  scheduledAt: string;
  /** When berthd acted on it (started the session, or recorded the skip). */
  startedAt: string;
  /** `schedules.run` (by hand) rather than the cron expression. */
  manual: boolean;
  outcome: ScheduleOutcome;
  reason: string | null;
  session: { id: string; name: string } | null;
  /** The session's state once it ended (exited, failed, stopped, removed), its exit code; null while it runs. */
  final: { state: string; exitCode: number | null } | null;
}

export interface Schedule {
  name: string;
  project: string;
  agent: string;
  /** Five fields: minute hour day-of-month month day-of-week (node-cron syntax). */
  cron: string;
  /** IANA time zone the expression is read in; null: UTC. */
  tz: string | null;
  /** Replaces the agent's command; null: the agent's own. */
  command: string[] | null;
  /** The task each run is handed (its prompt, BERTH_TASK_*); null: none. */
  task: number | null;
  concurrency: ConcurrencyPolicy;
  startingDeadlineSec: number;
  suspended: boolean;
  lastScheduledAt: string | null;
  /** null while suspended. */
  nextRunAt: string | null;
  /** Sessions of this schedule that run now. */
  active: { id: string; name: string }[];
  createdAt: string;
  updatedAt: string;
  /** The last runs, newest first. */
  history: ScheduleRun[];
}

export interface ScheduleInput {
  name: string;
  project: string;
  agent: string;
  cron: string;
  tz?: string;
  command?: string[];
  task?: number;
  concurrency?: ConcurrencyPolicy;
  startingDeadlineSec?: number;
  suspended?: boolean;
}

export interface ScheduleMethods {
  'schedules.add': { params: ScheduleInput; result: Schedule };
  'schedules.list': { params: { project?: string }; result: Schedule[] };
  'schedules.get': { params: { name: string }; result: Schedule };
  /** Changes what is given; `tz: null`, `command: null`, `task: null` clear them. `suspended` pauses and resumes. */
  'schedules.update': {
    params: {
      name: string;
      cron?: string;
      tz?: string | null;
      agent?: string;
      command?: string[] | null;
      task?: number | null;
      concurrency?: ConcurrencyPolicy;
      startingDeadlineSec?: number;
      suspended?: boolean;
    };
    result: Schedule;
  };
  /** Removes the schedule and its history; the sessions it started stay. */
  'schedules.remove': { params: { name: string }; result: { removed: string } };
  /** Starts a run now, with the schedule's concurrency policy (a forbidden run is recorded skipped). */
  'schedules.run': { params: { name: string }; result: { schedule: Schedule; run: ScheduleRun } };
}
