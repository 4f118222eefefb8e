import type { MaintenanceRun } from '@berth/client-sdk/protocol';
import type { Db } from './db.js';

interface Row {
  job: string;
  started_at: string;
  finished_at: string;
  ok: number;
  summary: string | null;
  error: string | null;
}

const toRun = (r: Row): MaintenanceRun => ({
  job: r.job,
  startedAt: r.started_at,
  finishedAt: r.finished_at,
  ok: r.ok === 1,
  summary: r.summary === null ? null : (JSON.parse(r.summary) as Record<string, unknown>),
  error: r.error,
});

/** The `maintenance_runs` table: each job's recent runs, newest last. */
export class MaintenanceRunsRepo {
  private readonly insert;
  private readonly trim;
  private readonly latest;
  private readonly recent;

  constructor(db: Db) {
    this.insert = db.prepare('INSERT INTO maintenance_runs (job, started_at, finished_at, ok, summary, error) VALUES (?, ?, ?, ?, ?, ?)');
    this.trim = db.prepare('DELETE FROM maintenance_runs WHERE job = ? AND id <= (SELECT id FROM maintenance_runs WHERE job = ? ORDER BY id DESC LIMIT 1 OFFSET ?)');
    this.latest = db.prepare<[string], Row>('SELECT * FROM maintenance_runs WHERE job = ? ORDER BY id DESC LIMIT 1');
    this.recent = db.prepare<[string, number], Row>('SELECT * FROM maintenance_runs WHERE job = ? ORDER BY id DESC LIMIT ?');
  }

  /** Records a run and keeps only the job's last `keep` runs. */
  record(run: MaintenanceRun, keep: number): void {
    this.insert.run(run.job, run.startedAt, run.finishedAt, run.ok ? 1 : 0, run.summary === null ? null : JSON.stringify(run.summary), run.error);
    this.trim.run(run.job, run.job, keep);
  }

  last(job: string): MaintenanceRun | null {
    const r = this.latest.get(job);
    return r ? toRun(r) : null;
  }

  /** Newest first. */
  list(job: string, limit: number): MaintenanceRun[] {
    return this.recent.all(job, limit).map(toRun);
  }
}
