/**
 * berthd looking after itself: scheduled maintenance jobs (each also runnable by hand), online
 * backups of the state database, and what `$BERTH_HOME` holds on disk.
 */

/** The jobs berthd runs; `maintenance.run` takes one of these names. */
export const MAINTENANCE_JOBS = ['backup', 'prune', 'images', 'checkouts'] as const;
export type MaintenanceJobName = (typeof MAINTENANCE_JOBS)[number];

/** One run of a job, as recorded (the last few per job are kept). */
export interface MaintenanceRun {
  job: string;
  startedAt: string;
  finishedAt: string;
  ok: boolean;
  /** What the job did (job-specific JSON: the backup's path, the images removed ...); null when it failed. */
  summary: Record<string, unknown> | null;
  /** Why it failed; null when ok. */
  error: string | null;
}

export interface MaintenanceJobStatus {
  job: string;
  /** The cron expression it runs on (local time). */
  cron: string;
  /** Whether a run is under way now. */
  running: boolean;
  lastRun: MaintenanceRun | null;
  nextRunAt: string | null;
}

/** Bytes of `$BERTH_HOME` by kind (symlinks are not followed; `other` is everything else). */
export interface DiskUse {
  db: number;
  backups: number;
  logs: number;
  checkouts: number;
  repos: number;
  other: number;
  total: number;
  /** When this was measured (it is measured at most once a minute, off the RPC's path). */
  measuredAt: string;
}

export interface BackupResult {
  path: string;
  bytes: number;
  /** The backups removed because more than `backupKeep` were kept (none for `--to`). */
  pruned: string[];
}

export interface MaintenanceMethods {
  /** Every job, its schedule, last run and next run. */
  'maintenance.list': { params: Record<string, never>; result: MaintenanceJobStatus[] };
  /** Runs `job` now and returns the run (a failed run is returned with `ok: false`, not thrown). */
  'maintenance.run': { params: { job: string }; result: MaintenanceRun };
  /**
   * An online backup of the state database now: into `$BERTH_HOME/backups/` (rotated, as the
   * scheduled one), or to `to` (an absolute path that must not exist yet; never rotated).
   */
  'maintenance.backup': { params: { to?: string }; result: BackupResult };
}
