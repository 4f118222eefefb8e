import type { Statement } from 'better-sqlite3';
import type { Task, TaskNote, TaskResult, TaskState } from '@berth/client-sdk/protocol';
import type { Db } from './db.js';

interface Row {
  id: number;
  project: string;
  key: string | null;
  title: string;
  body: string;
  priority: number;
  labels: string;
  state: TaskState;
  claim_session: string | null;
  claim_name: string | null;
  lease_until: string | null;
  lease_sec: number | null;
  attempts: number;
  max_attempts: number;
  result: string | null;
  notes: string;
  pool: string | null;
  reviewer_session: string | null;
  created_at: string;
  updated_at: string;
  deps: string | null;
}

/** A task as stored, with who reviews it (not part of the public view). */
export interface TaskRecord extends Task {
  reviewerSession: string | null;
  /** The lease length the holder asked for (seconds), null for the default. */
  leaseSec: number | null;
}

const deps = (t: string) => `(SELECT json_group_array(depends_on) FROM task_deps WHERE task_id = ${t}.id) AS deps`;
const SELECT = `SELECT t.*, ${deps('t')} FROM tasks t`;
/** What an UPDATE of tasks hands back: the row as it wrote it, as get() reads one. */
const RETURNING = `RETURNING *, ${deps('tasks')}`;

/** Open, with every dependency done (`waiting` counts those that are not: migration 12's triggers keep it). */
const CLAIMABLE = `state = 'open' AND waiting = 0`;

function toTask(r: Row): TaskRecord {
  return {
    id: r.id,
    project: r.project,
    key: r.key,
    title: r.title,
    body: r.body,
    priority: r.priority,
    labels: JSON.parse(r.labels) as string[],
    dependsOn: r.deps ? (JSON.parse(r.deps) as number[]).sort((a, b) => a - b) : [],
    state: r.state,
    claim:
      r.state === 'claimed' && r.claim_session && r.lease_until
        ? { session: r.claim_session, sessionName: r.claim_name ?? '', leaseUntil: r.lease_until, attempt: r.attempts }
        : null,
    attempts: r.attempts,
    maxAttempts: r.max_attempts,
    result: r.result ? (JSON.parse(r.result) as TaskResult) : null,
    notes: JSON.parse(r.notes) as TaskNote[],
    pool: r.pool,
    createdAt: r.created_at,
    updatedAt: r.updated_at,
    reviewerSession: r.reviewer_session,
    leaseSec: r.lease_sec,
  };
}

/** The public view of a stored task. */
export function publicTask(t: TaskRecord): Task {
  const { reviewerSession: _r, leaseSec: _l, ...task } = t;
  return task;
}

/** A lease: until when, and the length asked for (seconds). */
export interface Lease {
  until: string;
  sec: number;
}

export type NewTask = Pick<Task, 'project' | 'key' | 'title' | 'body' | 'priority' | 'labels' | 'dependsOn' | 'maxAttempts'>;

export type TaskPatch = Partial<Pick<NewTask, 'title' | 'body' | 'priority' | 'labels' | 'maxAttempts'> & { attempts: number }>;

/**
 * The tasks table. Every change of who holds a task is one conditional UPDATE in a transaction, so
 * a task is never held by two sessions (and the unique index on the holder says so again).
 */
export class TasksRepo {
  private readonly statements = new Map<string, Statement>();

  constructor(private readonly db: Db) {}

  private prepare<P extends unknown[] | object = unknown[], R = unknown>(sql: string): Statement<P, R> {
    let st = this.statements.get(sql);
    if (!st) {
      st = this.db.prepare(sql);
      this.statements.set(sql, st);
    }
    return st as unknown as Statement<P, R>;
  }

  transaction<T>(fn: () => T): T {
    return this.db.transaction(fn).immediate();
  }

  get(id: number): TaskRecord | undefined {
    const r = this.prepare<[number], Row>(`${SELECT} WHERE t.id = ?`).get(id);
    return r && toTask(r);
  }

  byKey(project: string, key: string): TaskRecord | undefined {
    const r = this.prepare<[string, string], Row>(`${SELECT} WHERE t.project = ? AND t.key = ?`).get(project, key);
    return r && toTask(r);
  }

  /** The task `session` holds, if any. */
  heldBy(session: string): TaskRecord | undefined {
    const r = this.prepare<[string], Row>(`${SELECT} WHERE t.claim_session = ?`).get(session);
    return r && toTask(r);
  }

  /** The task `session` reviews, if any. */
  reviewedBy(session: string): TaskRecord | undefined {
    const r = this.prepare<[string], Row>(`${SELECT} WHERE t.reviewer_session = ?`).get(session);
    return r && toTask(r);
  }

  /** A page in id order. */
  page(q: { project?: string; state?: TaskState; limit: number; afterId?: number }): TaskRecord[] {
    const where: string[] = [];
    const args: Record<string, unknown> = { limit: q.limit };
    if (q.project) {
      where.push('t.project = @project');
      args.project = q.project;
    }
    if (q.state) {
      where.push('t.state = @state');
      args.state = q.state;
    }
    if (q.afterId !== undefined) {
      where.push('t.id > @afterId');
      args.afterId = q.afterId;
    }
    const sql = `${SELECT} ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY t.id LIMIT @limit`;
    return this.prepare<[Record<string, unknown>], Row>(sql).all(args).map(toTask);
  }

  ofProject(project: string): TaskRecord[] {
    return this.prepare<[string], Row>(`${SELECT} WHERE t.project = ? ORDER BY t.id`).all(project).map(toTask);
  }

  /** Tasks of the project by state (every state present, zero when none). */
  counts(project: string): Record<TaskState, number> {
    const out: Record<TaskState, number> = { open: 0, claimed: 0, review: 0, done: 0, failed: 0, cancelled: 0 };
    for (const r of this.prepare<[string], { state: TaskState; n: number }>('SELECT state, count(*) AS n FROM tasks WHERE project = ? GROUP BY state').all(project)) {
      out[r.state] = r.n;
    }
    return out;
  }

  /** Tasks a pool finished. */
  doneBy(pool: string): number {
    return this.prepare<[string], number>("SELECT count(*) FROM tasks WHERE pool = ? AND state = 'done'").pluck(true).get(pool)!;
  }

  insert(t: NewTask, now: string, pool: string | null = null): number {
    const id = Number(
      this.prepare(
        `INSERT INTO tasks (project, key, title, body, priority, labels, max_attempts, pool, created_at, updated_at)
         VALUES (@project, @key, @title, @body, @priority, @labels, @maxAttempts, @pool, @now, @now)`,
      ).run({ ...t, labels: JSON.stringify(t.labels), pool, now }).lastInsertRowid,
    );
    this.setDeps(id, t.dependsOn);
    return id;
  }

  update(id: number, patch: TaskPatch, now: string): void {
    const sets: string[] = ['updated_at = @now'];
    const args: Record<string, unknown> = { id, now };
    const cols: Record<keyof TaskPatch, string> = { title: 'title', body: 'body', priority: 'priority', labels: 'labels', maxAttempts: 'max_attempts', attempts: 'attempts' };
    for (const [k, col] of Object.entries(cols) as [keyof TaskPatch, string][]) {
      if (patch[k] === undefined) continue;
      sets.push(`${col} = @${k}`);
      args[k] = k === 'labels' ? JSON.stringify(patch[k]) : patch[k];
    }
    this.db.prepare(`UPDATE tasks SET ${sets.join(', ')} WHERE id = @id`).run(args);
  }

  setDeps(id: number, deps: readonly number[]): void {
    this.prepare('DELETE FROM task_deps WHERE task_id = ?').run(id);
    const ins = this.prepare('INSERT OR IGNORE INTO task_deps (task_id, depends_on) VALUES (?, ?)');
    for (const d of deps) ins.run(id, d);
  }

  /** Whether `from` reaches `to` through dependencies (a new edge to → from would close a cycle). */
  reaches(from: number, to: number): boolean {
    return (
      this.prepare<[number, number], number>(
        `WITH RECURSIVE r(id) AS (SELECT ? UNION SELECT d.depends_on FROM task_deps d JOIN r ON d.task_id = r.id)
         SELECT 1 FROM r WHERE id = ? LIMIT 1`,
      )
        .pluck(true)
        .get(from, to) !== undefined
    );
  }

  /** Ids of `ids` that are tasks of `project`. */
  existing(project: string, ids: readonly number[]): Set<number> {
    const st = this.prepare<[number, string], number>('SELECT id FROM tasks WHERE id = ? AND project = ?').pluck(true);
    return new Set(ids.filter((i) => st.get(i, project) !== undefined));
  }

  /** The next task a claim in `project` would get (highest priority, then oldest), without claiming it. */
  nextClaimable(project: string): number | undefined {
    return this.prepare<[string], number>(`SELECT id FROM tasks WHERE project = ? AND ${CLAIMABLE} ORDER BY priority DESC, id LIMIT 1`)
      .pluck(true)
      .get(project);
  }

  /** Claims task `id` for the session if it is claimable; returns whether it did. */
  claim(id: number, session: { id: string; name: string }, lease: Lease, now: string, pool: string | null): boolean {
    const r = this.prepare(
      `UPDATE tasks SET state = 'claimed', claim_session = @session, claim_name = @name, lease_until = @leaseUntil, lease_sec = @leaseSec,
         attempts = attempts + 1, pool = coalesce(@pool, pool), updated_at = @now
       WHERE id = @id AND claim_session IS NULL AND ${CLAIMABLE}`,
    ).run({ id, session: session.id, name: session.name, leaseUntil: lease.until, leaseSec: lease.sec, now, pool });
    return r.changes === 1;
  }

  /**
   * Claims the next claimable task of `project` (as nextClaimable picks it) for the session, in one
   * statement: what is picked and what is changed cannot differ. Returns the task as claimed, or
   * undefined when nothing is claimable.
   */
  claimNext(project: string, session: { id: string; name: string }, lease: Lease, now: string): TaskRecord | undefined {
    const r = this.prepare<[Record<string, unknown>], Row>(
      `UPDATE tasks SET state = 'claimed', claim_session = @session, claim_name = @name, lease_until = @leaseUntil, lease_sec = @leaseSec,
         attempts = attempts + 1, updated_at = @now
       WHERE id = (SELECT id FROM tasks WHERE project = @project AND ${CLAIMABLE} ORDER BY priority DESC, id LIMIT 1) AND claim_session IS NULL
       ${RETURNING}`,
    ).get({ project, session: session.id, name: session.name, leaseUntil: lease.until, leaseSec: lease.sec, now });
    return r && toTask(r);
  }

  /** Extends the lease of what `session` holds; returns whether it holds one. */
  extend(session: string, lease: Lease, now: string): boolean {
    return (
      this.prepare("UPDATE tasks SET lease_until = @leaseUntil, lease_sec = @leaseSec, updated_at = @now WHERE claim_session = @session AND state = 'claimed'").run({
        session,
        leaseUntil: lease.until,
        leaseSec: lease.sec,
        now,
      }).changes === 1
    );
  }

  /** Leases that ran out before `now`. */
  expired(now: string): TaskRecord[] {
    return this.prepare<[string], Row>(`${SELECT} WHERE t.state = 'claimed' AND t.lease_until < ? ORDER BY t.lease_until`).all(now).map(toTask);
  }

  /** Every claimed task (for renewing leases after a restart). */
  claimed(): TaskRecord[] {
    return this.prepare<[], Row>(`${SELECT} WHERE t.state = 'claimed'`).all().map(toTask);
  }

  /**
   * The claim by `session` ends with the task in `state` (a note appended when given). Returns the
   * task as it is now, or undefined when the session holds no claim on `id`.
   */
  finishClaim(id: number, session: string, state: TaskState, now: string, opts: { result?: TaskResult; note?: TaskNote } = {}): TaskRecord | undefined {
    const r = this.prepare<[Record<string, unknown>], Row>(
      `UPDATE tasks SET state = @state, claim_session = NULL, claim_name = NULL, lease_until = NULL, result = coalesce(@result, result),
         notes = CASE WHEN @note IS NULL THEN notes ELSE json_insert(notes, '$[#]', json(@note)) END, updated_at = @now
       WHERE id = @id AND claim_session = @session AND state = 'claimed'
       ${RETURNING}`,
    ).get({ id, session, state, now, result: opts.result ? JSON.stringify(opts.result) : null, note: opts.note ? JSON.stringify(opts.note) : null });
    return r && toTask(r);
  }

  /** Sets state (and note, result, reviewer) of a task nobody holds. */
  set(id: number, patch: { state?: TaskState; result?: TaskResult | null; note?: TaskNote; reviewerSession?: string | null; pool?: string | null }, now: string): void {
    const t = this.get(id);
    if (!t) return;
    this.prepare(
      `UPDATE tasks SET state = @state, result = @result, notes = @notes, reviewer_session = @reviewer, pool = @pool,
         claim_session = CASE WHEN @state = 'claimed' THEN claim_session END, claim_name = CASE WHEN @state = 'claimed' THEN claim_name END,
         lease_until = CASE WHEN @state = 'claimed' THEN lease_until END, updated_at = @now WHERE id = @id`,
    ).run({
      id,
      now,
      state: patch.state ?? t.state,
      result: patch.result === undefined ? (t.result ? JSON.stringify(t.result) : null) : patch.result ? JSON.stringify(patch.result) : null,
      notes: JSON.stringify(patch.note ? [...t.notes, patch.note] : t.notes),
      reviewer: patch.reviewerSession === undefined ? t.reviewerSession : patch.reviewerSession,
      pool: patch.pool === undefined ? t.pool : patch.pool,
    });
  }

  /** Attempts given back (a release that was not the agent's doing, such as a pool stopped). */
  refundAttempt(id: number): void {
    this.prepare('UPDATE tasks SET attempts = max(attempts - 1, 0) WHERE id = ?').run(id);
  }

  /** Tasks a pool works on or waits to review (claimed or in review). */
  pendingOf(pool: string): number {
    return this.prepare<[string], number>("SELECT count(*) FROM tasks WHERE pool = ? AND state IN ('claimed', 'review')").pluck(true).get(pool)!;
  }

  /** A pool's tasks in review with their branch imported and no reviewer yet, oldest first. */
  awaitingReview(pool: string, limit: number): TaskRecord[] {
    return this.prepare<[string, number], Row>(
      `${SELECT} WHERE t.pool = ? AND t.state = 'review' AND t.reviewer_session IS NULL AND json_extract(t.result, '$.commit') IS NOT NULL ORDER BY t.updated_at, t.id LIMIT ?`,
    )
      .all(pool, limit)
      .map(toTask);
  }

  remove(id: number): boolean {
    return this.prepare('DELETE FROM tasks WHERE id = ?').run(id).changes === 1;
  }
}
