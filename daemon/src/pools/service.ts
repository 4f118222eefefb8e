import { BerthError, type ParamsOf, type Pool } from '@berth/client-sdk/protocol';
import type { EventBus } from '../events/bus.js';
import type { Clock } from '../shared/clock.js';
import { assertName } from '../shared/names.js';
import type { AgentsRepo } from '../store/agents.js';
import type { PoolRecord, PoolsRepo } from '../store/pools.js';
import type { ProjectsRepo } from '../store/projects.js';
import type { SessionsRepo } from '../store/sessions.js';
import type { TasksRepo } from '../store/tasks.js';
import type { UsageRepo } from '../store/usage.js';

export interface PoolServiceDeps {
  pools: PoolsRepo;
  tasks: TasksRepo;
  projects: ProjectsRepo;
  agents: AgentsRepo;
  sessions: SessionsRepo;
  usage: UsageRepo;
  bus: EventBus;
  clock: Clock;
  /** The pool controller is told a pool's desired state changed. */
  poke: (id: string) => void;
}

/**
 * Pool RPCs: they only write desired state (the pool row) and poke the controller, which makes the
 * sessions match, as the reconciler does for containers.
 */
export class PoolService {
  constructor(private readonly d: PoolServiceDeps) {}

  private now(): string {
    return this.d.clock.now().toISOString();
  }

  private mustGet(id: string): PoolRecord {
    const p = this.d.pools.get(id);
    if (!p) throw new BerthError('POOL_NOT_FOUND', `no pool ${id}`, { details: { id } });
    return p;
  }

  view(p: PoolRecord): Pool {
    const sessions = this.d.pools.sessions(p.id).map((ps) => {
      const s = this.d.sessions.get(ps.sessionId);
      return { id: ps.sessionId, name: s?.name ?? '', role: ps.role, task: ps.taskId, state: s?.state ?? 'removed' };
    });
    const live = sessions.reduce((n, s) => n + this.d.usage.tokens(s.id), 0);
    const finished = this.d.tasks.doneBy(p.id);
    const hours = Math.max((this.d.clock.now().getTime() - Date.parse(p.createdAt)) / 3_600_000, 1 / 60);
    return {
      id: p.id,
      project: p.project,
      agent: p.agent,
      parallel: p.parallel,
      reviewer: p.reviewer,
      autoMerge: p.autoMerge,
      untilEmpty: p.untilEmpty,
      state: p.state,
      createdAt: p.createdAt,
      updatedAt: p.updatedAt,
      tasks: this.d.tasks.counts(p.project),
      sessions,
      finished,
      perHour: Math.round((finished / hours) * 10) / 10,
      tokens: p.tokens + live,
    };
  }

  create(p: ParamsOf<'pools.create'>): Pool {
    assertName('project', p.project);
    assertName('agent', p.agent);
    if (p.reviewer !== undefined) assertName('agent', p.reviewer);
    if (!this.d.projects.get(p.project)) throw new BerthError('PROJECT_NOT_FOUND', `no project named ${p.project}`, { details: { name: p.project } });
    for (const a of [p.agent, p.reviewer]) {
      if (a !== undefined && !this.d.agents.get(a)) throw new BerthError('AGENT_NOT_FOUND', `no agent named ${a}`, { details: { name: a } });
    }
    const id = p.name ?? `${p.project}-pool`;
    assertName('pool', id);
    const had = this.d.pools.get(id);
    if (had && had.state !== 'stopped' && had.state !== 'done') {
      throw new BerthError('POOL_EXISTS', `pool ${id} is ${had.state}`, { details: { id } });
    }
    const now = this.now();
    if (had) {
      // A stopped pool of that name runs again with the new settings (its history stays).
      this.d.pools.replace({ id, project: p.project, agent: p.agent, parallel: p.parallel, reviewer: p.reviewer ?? null, autoMerge: p.autoMerge === true, untilEmpty: p.untilEmpty === true, state: 'running', createdAt: now });
    } else {
      this.d.pools.insert({ id, project: p.project, agent: p.agent, parallel: p.parallel, reviewer: p.reviewer ?? null, autoMerge: p.autoMerge === true, untilEmpty: p.untilEmpty === true, state: 'running', createdAt: now });
    }
    const pool = this.view(this.mustGet(id));
    this.d.bus.publish('pool.created', { pool });
    this.d.poke(id);
    return pool;
  }

  list(p: ParamsOf<'pools.list'>): Pool[] {
    return this.d.pools.list(p.project).map((x) => this.view(x));
  }

  get(id: string): Pool {
    return this.view(this.mustGet(id));
  }

  scale(id: string, parallel: number): Pool {
    const p = this.mustGet(id);
    if (p.state !== 'running') throw new BerthError('POOL_EXISTS', `pool ${id} is ${p.state}; create it again to run it`, { details: { id, state: p.state } });
    this.d.pools.set(id, { parallel }, this.now());
    const pool = this.view(this.mustGet(id));
    this.d.bus.publish('pool.updated', { pool });
    this.d.poke(id);
    return pool;
  }

  stop(id: string, graceful: boolean): Pool {
    const p = this.mustGet(id);
    if (p.state === 'running' || (p.state === 'draining' && !graceful)) {
      this.d.pools.set(id, { state: graceful ? 'draining' : 'stopped' }, this.now());
    }
    const pool = this.view(this.mustGet(id));
    this.d.bus.publish('pool.updated', { pool });
    this.d.poke(id);
    return pool;
  }
}
