import { schedule as cronSchedule } from 'node-cron';
import { BerthError, type MaintenanceJobStatus, type MaintenanceRun } from '@berth/client-sdk/protocol';
import type { EventBus } from '../events/bus.js';
import type { Logger } from '../log.js';
import type { Clock } from '../shared/clock.js';
import type { MaintenanceRunsRepo } from '../store/maintenance.js';

/** What a job reports of a run: small JSON (counts, a path, the first few names), never unbounded lists. */
export type JobSummary = Record<string, unknown>;

export interface MaintenanceJob {
  name: string;
  /** Default schedule, a cron expression in local time (config `maintenanceCron` overrides it; "off" disables). */
  cron: string;
  /** Also run once as berthd starts (the checkout repairs did so before they were a job). */
  atStart?: boolean;
  /** Does the work; `signal` aborts when berthd stops. A throw is recorded as a failed run. */
  run(signal: AbortSignal): Promise<JobSummary>;
}

/** The timer a job is scheduled with: node-cron by default; tests pass their own to fire it. */
export type Scheduler = (cron: string, fire: () => void) => { stop(): void; nextRunAt(): Date | null };

export const cronScheduler: Scheduler = (cron, fire) => {
  const task = cronSchedule(cron, fire, { noOverlap: true });
  return { stop: () => void task.stop(), nextRunAt: () => task.getNextRun() };
};

export interface MaintenanceDeps {
  runs: MaintenanceRunsRepo;
  bus: EventBus;
  log: Logger;
  clock: Clock;
  scheduler?: Scheduler;
  /** Per-job schedules over the jobs' defaults. */
  cron?: Partial<Record<string, string>>;
  /** Runs kept per job (default 50). */
  keepRuns?: number;
}

/**
 * Runs berthd's maintenance jobs on their schedules and on request, one run of a job at a time:
 * a run asked for while the same job runs gets MAINTENANCE_JOB_RUNNING (a scheduled one is skipped).
 * Every run is logged ("Starting X… / Finished X / Failed X: cause"), recorded in the store and
 * announced as a `maintenance.run` event; a failing job never throws out of the runner.
 */
export class Maintenance {
  private readonly jobs = new Map<string, MaintenanceJob>();
  private readonly running = new Map<string, Promise<MaintenanceRun>>();
  private readonly timers = new Map<string, ReturnType<Scheduler>>();
  private readonly aborts = new AbortController();

  constructor(
    private readonly d: MaintenanceDeps,
    jobs: MaintenanceJob[],
  ) {
    for (const j of jobs) this.jobs.set(j.name, j);
  }

  names(): string[] {
    return [...this.jobs.keys()];
  }

  cronOf(job: MaintenanceJob): string {
    return this.d.cron?.[job.name] ?? job.cron;
  }

  /** Schedules every job (and runs the atStart ones); resolves once `signal` aborts and running jobs have ended. */
  async start(signal: AbortSignal): Promise<void> {
    if (signal.aborted) return;
    const scheduler = this.d.scheduler ?? cronScheduler;
    for (const job of this.jobs.values()) {
      const cron = this.cronOf(job);
      if (cron !== 'off') this.timers.set(job.name, scheduler(cron, () => void this.scheduled(job.name)));
      if (job.atStart) void this.scheduled(job.name);
    }
    await new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
    for (const t of this.timers.values()) t.stop();
    this.timers.clear();
    this.aborts.abort();
    await Promise.allSettled([...this.running.values()]);
  }

  private async scheduled(name: string): Promise<void> {
    if (this.running.has(name)) {
      this.d.log.info({ job: name }, `Skipped ${name}: the previous run has not finished`);
      return;
    }
    await this.run(name).catch(() => {});
  }

  /** Runs `name` now; resolves with the run, failed ones included. */
  run(name: string): Promise<MaintenanceRun> {
    const job = this.jobs.get(name);
    if (!job) {
      throw new BerthError('MAINTENANCE_JOB_UNKNOWN', `no maintenance job ${JSON.stringify(name)}; jobs: ${this.names().join(', ')}`, {
        details: { job: name, jobs: this.names() },
      });
    }
    if (this.running.has(name)) {
      throw new BerthError('MAINTENANCE_JOB_RUNNING', `maintenance job ${name} is running now`, { details: { job: name } });
    }
    const p = this.execute(job).finally(() => this.running.delete(name));
    this.running.set(name, p);
    return p;
  }

  private async execute(job: MaintenanceJob): Promise<MaintenanceRun> {
    const log = this.d.log.child({ job: job.name });
    const startedAt = this.d.clock.now().toISOString();
    log.info(`Starting ${job.name}…`);
    let run: MaintenanceRun;
    try {
      const summary = await job.run(this.aborts.signal);
      run = { job: job.name, startedAt, finishedAt: this.d.clock.now().toISOString(), ok: true, summary, error: null };
      log.info({ summary }, `Finished ${job.name}`);
    } catch (err) {
      const cause = err instanceof BerthError ? `${err.code}: ${err.message}` : ((err as Error)?.message ?? String(err));
      run = { job: job.name, startedAt, finishedAt: this.d.clock.now().toISOString(), ok: false, summary: null, error: cause };
      log.warn({ err: cause }, `Failed ${job.name}: ${cause}`);
    }
    try {
      this.d.runs.record(run, this.d.keepRuns ?? 50);
    } catch (err) {
      // The store closing under a run that outlived stop(): the run is still logged and announced.
      log.warn({ err: (err as Error).message }, `Could not record the run of ${job.name}`);
    }
    this.d.bus.publish('maintenance.run', run);
    return run;
  }

  status(): MaintenanceJobStatus[] {
    return [...this.jobs.values()].map((job) => ({
      job: job.name,
      cron: this.cronOf(job),
      running: this.running.has(job.name),
      lastRun: this.d.runs.last(job.name),
      nextRunAt: this.timers.get(job.name)?.nextRunAt()?.toISOString() ?? null,
    }));
  }
}
