import { AgentsRepo } from './agents.js';
import { openDb, type Db, type OpenOptions } from './db.js';
import { MaintenanceRunsRepo } from './maintenance.js';
import { MetaRepo } from './meta.js';
import { PoolsRepo } from './pools.js';
import { ProjectsRepo } from './projects.js';
import { SchedulesRepo } from './schedules.js';
import { RemovedSessionsRepo } from './removed-sessions.js';
import { SessionsRepo } from './sessions.js';
import { TasksRepo } from './tasks.js';
import { UsageRepo } from './usage.js';

export { openDb, migrate, schemaVersion, type Db } from './db.js';
export { latestVersion, migrations } from './migrations.js';

/** The daemon's state: one database, one repository per table. */
export class Store {
  readonly projects: ProjectsRepo;
  readonly agents: AgentsRepo;
  readonly sessions: SessionsRepo;
  readonly meta: MetaRepo;
  readonly usage: UsageRepo;
  readonly tasks: TasksRepo;
  readonly pools: PoolsRepo;
  readonly maintenance: MaintenanceRunsRepo;
  readonly schedules: SchedulesRepo;
  readonly removedSessions: RemovedSessionsRepo;

  constructor(readonly db: Db) {
    this.projects = new ProjectsRepo(db);
    this.agents = new AgentsRepo(db);
    this.sessions = new SessionsRepo(db);
    this.meta = new MetaRepo(db);
    this.usage = new UsageRepo(db);
    this.tasks = new TasksRepo(db);
    this.pools = new PoolsRepo(db);
    this.maintenance = new MaintenanceRunsRepo(db);
    this.schedules = new SchedulesRepo(db);
    this.removedSessions = new RemovedSessionsRepo(db);
  }

  static open(file: string, opts?: OpenOptions): Store {
    return new Store(openDb(file, opts));
  }

  /** Cheap liveness probe for /health. */
  ping(): void {
    this.db.prepare('SELECT 1').get();
  }

  close(): void {
    if (this.db.open) this.db.close();
  }
}
