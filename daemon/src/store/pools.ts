import type { Pool, PoolState } from '@berth/client-sdk/protocol';
import type { Db } from './db.js';

/** A pool as stored: its desired state, and the tokens of its sessions already removed. */
export type PoolRecord = Pick<Pool, 'id' | 'project' | 'agent' | 'parallel' | 'reviewer' | 'autoMerge' | 'untilEmpty' | 'state' | 'tokens' | 'createdAt' | 'updatedAt'>;

export interface PoolSession {
  sessionId: string;
  pool: string;
  taskId: number;
  role: 'worker' | 'reviewer';
  createdAt: string;
}

interface Row {
  id: string;
  project: string;
  agent: string;
  parallel: number;
  reviewer: string | null;
  auto_merge: number;
  until_empty: number;
  state: PoolState;
  tokens: number;
  created_at: string;
  updated_at: string;
}

const toPool = (r: Row): PoolRecord => ({
  id: r.id,
  project: r.project,
  agent: r.agent,
  parallel: r.parallel,
  reviewer: r.reviewer,
  autoMerge: r.auto_merge === 1,
  untilEmpty: r.until_empty === 1,
  state: r.state,
  tokens: r.tokens,
  createdAt: r.created_at,
  updatedAt: r.updated_at,
});

/** Pools (desired state, reconciled like sessions) and the sessions each one started. */
export class PoolsRepo {
  private readonly stmts;

  constructor(private readonly db: Db) {
    // Read on every task event (which pools to look at): prepared once.
    this.stmts = {
      get: db.prepare<[string], Row>('SELECT * FROM pools WHERE id = ?'),
      all: db.prepare<[], Row>('SELECT * FROM pools ORDER BY created_at, id'),
      ofProject: db.prepare<[string], Row>('SELECT * FROM pools WHERE project = ? ORDER BY created_at, id'),
    };
  }

  get(id: string): PoolRecord | undefined {
    const r = this.stmts.get.get(id);
    return r && toPool(r);
  }

  list(project?: string): PoolRecord[] {
    const rows = project ? this.stmts.ofProject.all(project) : this.stmts.all.all();
    return rows.map(toPool);
  }

  insert(p: Omit<PoolRecord, 'tokens' | 'updatedAt'>): void {
    this.db
      .prepare(
        `INSERT INTO pools (id, project, agent, parallel, reviewer, auto_merge, until_empty, state, created_at, updated_at)
         VALUES (@id, @project, @agent, @parallel, @reviewer, @autoMerge, @untilEmpty, @state, @createdAt, @createdAt)`,
      )
      .run({ ...p, autoMerge: p.autoMerge ? 1 : 0, untilEmpty: p.untilEmpty ? 1 : 0 });
  }

  /** A stopped pool made again under its name: new settings, counters kept. */
  replace(p: Omit<PoolRecord, 'tokens' | 'updatedAt'>): void {
    this.db
      .prepare(
        `UPDATE pools SET project = @project, agent = @agent, parallel = @parallel, reviewer = @reviewer, auto_merge = @autoMerge,
           until_empty = @untilEmpty, state = @state, updated_at = @createdAt WHERE id = @id`,
      )
      .run({ ...p, autoMerge: p.autoMerge ? 1 : 0, untilEmpty: p.untilEmpty ? 1 : 0 });
  }

  set(id: string, patch: { parallel?: number; state?: PoolState; tokensDelta?: number }, now: string): void {
    this.db
      .prepare(
        `UPDATE pools SET parallel = coalesce(@parallel, parallel), state = coalesce(@state, state),
           tokens = tokens + @tokens, updated_at = @now WHERE id = @id`,
      )
      .run({ id, parallel: patch.parallel ?? null, state: patch.state ?? null, tokens: patch.tokensDelta ?? 0, now });
  }

  sessions(pool: string): PoolSession[] {
    return this.db
      .prepare<[string], { session_id: string; pool: string; task_id: number; role: 'worker' | 'reviewer'; created_at: string }>(
        'SELECT * FROM pool_sessions WHERE pool = ? ORDER BY created_at, session_id',
      )
      .all(pool)
      .map((r) => ({ sessionId: r.session_id, pool: r.pool, taskId: r.task_id, role: r.role, createdAt: r.created_at }));
  }

  sessionOf(sessionId: string): PoolSession | undefined {
    const r = this.db
      .prepare<[string], { session_id: string; pool: string; task_id: number; role: 'worker' | 'reviewer'; created_at: string }>('SELECT * FROM pool_sessions WHERE session_id = ?')
      .get(sessionId);
    return r && { sessionId: r.session_id, pool: r.pool, taskId: r.task_id, role: r.role, createdAt: r.created_at };
  }

  addSession(s: PoolSession): void {
    this.db.prepare('INSERT INTO pool_sessions (session_id, pool, task_id, role, created_at) VALUES (?, ?, ?, ?, ?)').run(s.sessionId, s.pool, s.taskId, s.role, s.createdAt);
  }

  dropSession(sessionId: string): void {
    this.db.prepare('DELETE FROM pool_sessions WHERE session_id = ?').run(sessionId);
  }
}
