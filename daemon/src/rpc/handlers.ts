import type { ConfigChange, DaemonStatus } from '@berth/client-sdk/protocol';
import type { AgentService } from '../agents/service.js';
import type { UsageService } from '../bridge/usage-service.js';
import type { ProjectService } from '../projects/service.js';
import type { SessionService } from '../sessions/service.js';
import type { ImageService } from '../images/service.js';
import type { PoolService } from '../pools/service.js';
import type { ScheduleService } from '../schedules/service.js';
import type { TaskService } from '../tasks/service.js';
import { BerthError } from '@berth/client-sdk/protocol';
import type { Backups } from '../maintenance/backup.js';
import type { Maintenance } from '../maintenance/runner.js';
import type { Handlers } from './dispatcher.js';

export interface HandlerDeps {
  projects: ProjectService;
  agents: AgentService;
  sessions: SessionService;
  images: ImageService;
  usage: UsageService;
  tasks: TaskService;
  pools: PoolService;
  schedules: ScheduleService;
  status: () => Promise<DaemonStatus>;
  /** Reads the config files again (trigger `rpc`); throws CONFIG_INVALID or CONFIG_RELOAD_UNAVAILABLE. */
  reloadConfig: () => ConfigChange;
  maintenance: Maintenance;
  backups: Backups;
}

/** Method name → service call. Params arrive validated against the protocol's types. */
export function createHandlers(d: HandlerDeps): Handlers {
  return {
    'daemon.status': () => d.status(),
    'daemon.reloadConfig': () => d.reloadConfig(),
    'projects.add': (p) => d.projects.add(p),
    'projects.list': () => d.projects.list(),
    'projects.get': (p) => d.projects.get(p.name),
    'projects.update': (p) => d.projects.update(p.name, p),
    'projects.remove': (p) => d.projects.remove(p.name),
    'agents.define': (p) => d.agents.define(p),
    'agents.list': () => d.agents.list(),
    'agents.get': (p) => d.agents.get(p.name),
    'agents.remove': (p) => d.agents.remove(p.name),
    'sessions.start': (p) => d.sessions.start(p),
    'sessions.list': (p) => d.sessions.list(p),
    'sessions.get': (p) => d.sessions.get(p.id),
    'sessions.stop': (p) => (p.graceful ? d.sessions.stopGracefully(p.id, p.withinSec) : d.sessions.stop(p.id, p.timeoutSec)),
    'sessions.restart': (p) => d.sessions.restart(p.id),
    'sessions.remove': (p) => d.sessions.remove(p.id, p),
    'sessions.status': (p) => d.sessions.status(p.id),
    'sessions.diff': (p) => d.sessions.diff(p.id, p.stat),
    'sessions.merge': (p) => d.sessions.merge(p.id, p.strategy, p.message, p.includeUncommitted === true),
    'images.list': () => d.images.list(),
    'images.remove': (p) => d.images.remove(p.name),
    'images.build': (p) => d.images.build(p),
    'images.buildDefaults': (p) => d.images.buildDefaults(p),
    'sessions.logs': ({ id, ...q }) => d.sessions.logs(id, q),
    'sessions.exec': (p) => d.sessions.exec(p.id, p.cmd, p.timeoutSec),
    'sessions.usage': (p) => d.usage.usage(p.id),
    'sessions.requests': (p) => d.usage.requests(p.id, p.limit),
    'tasks.add': (p) => d.tasks.add(p),
    'tasks.list': (p) => d.tasks.list(p),
    'tasks.get': (p) => d.tasks.get(p.id),
    'tasks.update': (p) => d.tasks.update(p),
    'tasks.cancel': (p) => d.tasks.cancel(p.id),
    'tasks.remove': (p) => d.tasks.remove(p.id),
    'tasks.import': (p) => d.tasks.import(p),
    'pools.create': (p) => d.pools.create(p),
    'pools.list': (p) => d.pools.list(p),
    'pools.get': (p) => d.pools.get(p.id),
    'pools.scale': (p) => d.pools.scale(p.id, p.parallel),
    'pools.stop': (p) => d.pools.stop(p.id, p.graceful === true),
    'maintenance.list': () => d.maintenance.status(),
    'maintenance.run': (p) => d.maintenance.run(p.job),
    'maintenance.backup': async (p) => {
      // To a path of the caller's: a one-off copy, not the rotated series (and not a recorded run).
      if (p.to !== undefined) return d.backups.backup({ to: p.to });
      const run = await d.maintenance.run('backup');
      if (!run.ok) throw new BerthError('BACKUP_FAILED', run.error ?? 'the backup failed');
      const s = run.summary as { path: string; bytes: number; pruned: string[] };
      return { path: s.path, bytes: s.bytes, pruned: s.pruned };
    },
    'schedules.add': (p) => d.schedules.add(p),
    'schedules.list': (p) => d.schedules.list(p),
    'schedules.get': (p) => d.schedules.get(p.name),
    'schedules.update': (p) => d.schedules.update(p),
    'schedules.remove': (p) => d.schedules.remove(p.name),
    'schedules.run': (p) => d.schedules.run(p.name),
  };
}
