import type { RestartPolicy, Session, SessionActivity, SessionDesired, SessionMerge, SessionState, UsageTotals } from '@berth/client-sdk/protocol';
import type { SessionSpec } from '../shared/session-spec.js';
import type { Statement } from 'better-sqlite3';
import type { Db } from './db.js';
import { ACTIVE, UNSETTLED } from './migrations.js';
import { COLUMN, LISTED_JSON, USAGE_JSON, toRecord, toSession, type ListedRow, type ObservedPatch, type Row, type SessionRecord } from './session-rows.js';

export { toSession, type CheckoutState, type ObservedPatch, type SessionRecord } from './session-rows.js';

/** The `sessions` table. */
export class SessionsRepo {
  private readonly statements = new Map<string, Statement>();
  /** The last pages read, each with the database's change stamp when it was read (see page()). */
  private readonly pages = new Map<string, { stamp: string; rows: ListedRow[] }>();

  constructor(private readonly db: Db) {}

  /** A prepared statement, compiled once per SQL text (a list page would otherwise compile its query each call). */
  private prepare<P extends unknown[] | object = unknown[], R = unknown>(sql: string): Statement<P, R> {
    let st = this.statements.get(sql);
    if (!st) {
      // IN lists make a text per length: keep the cache bounded.
      if (this.statements.size > 256) this.statements.clear();
      st = this.db.prepare(sql);
      this.statements.set(sql, st);
    }
    return st as unknown as Statement<P, R>;
  }

  get(id: string): SessionRecord | undefined {
    const r = this.prepare<[string], Row>('SELECT * FROM sessions WHERE id = ?').get(id);
    return r && toRecord(r);
  }

  /** The public view of a session, its model usage included. */
  view(rec: SessionRecord): Session {
    return toSession(rec, this.usage(rec.id));
  }

  /** Model usage through the session's bridge (UsageTotals), null before its first request. */
  usage(id: string): UsageTotals | null {
    const text = this.prepare<[string], string>(`SELECT ${USAGE_JSON} FROM session_usage WHERE session_id = ? HAVING count(*) > 0`)
      .pluck(true)
      .get(id);
    return text ? (JSON.parse(text) as UsageTotals) : null;
  }

  /** Records a merge of the session's branch by berth. */
  setMerged(id: string, merged: SessionMerge): void {
    this.prepare('UPDATE sessions SET merged = ? WHERE id = ?').run(JSON.stringify(merged), id);
  }

  /** Records what the agent reported; returns the state it had before. */
  setActivity(id: string, activity: SessionActivity): SessionActivity | null {
    return this.db.transaction(() => {
      const before = this.prepare<[string], string | null>('SELECT activity FROM sessions WHERE id = ?').pluck(true).get(id);
      this.prepare('UPDATE sessions SET activity = ? WHERE id = ?').run(JSON.stringify(activity), id);
      return before ? (JSON.parse(before) as SessionActivity) : null;
    })();
  }

  byName(name: string): SessionRecord | undefined {
    const r = this.prepare<[string], Row>('SELECT * FROM sessions WHERE name = ?').get(name);
    return r && toRecord(r);
  }

  byIdPrefix(prefix: string): SessionRecord[] {
    const escaped = prefix.replace(/[%_\\]/g, (c) => `\\${c}`);
    return this.db
      .prepare<[string], Row>("SELECT * FROM sessions WHERE id LIKE ? ESCAPE '\\' LIMIT 2")
      .all(`${escaped}%`)
      .map(toRecord);
  }

  hasContainerName(name: string): boolean {
    return this.prepare<[string], { n: number }>('SELECT count(*) AS n FROM sessions WHERE container_name = ?').get(name)!.n > 0;
  }

  /** A new container name for the session (the one it had is taken on the engine). */
  renameContainer(id: string, name: string): void {
    this.prepare('UPDATE sessions SET container_name = @name WHERE id = @id').run({ id, name });
  }

  countByProject(project: string): number {
    return this.prepare<[string], { n: number }>('SELECT count(*) AS n FROM sessions WHERE project = ?').get(project)!.n;
  }

  /** Write sessions working in the project's main checkout (worktrees: when-shared). */
  sharingMain(project: string): SessionRecord[] {
    return this.db
      .prepare<[string], Row>("SELECT * FROM sessions WHERE project = ? AND mode = 'write' AND checkout_dir IS NULL AND desired != 'removed'")
      .all(project)
      .map(toRecord);
  }

  /** Sessions with a finished checkout of their own that are not being removed. */
  withCheckouts(): SessionRecord[] {
    return this.db
      .prepare<[], Row>("SELECT * FROM sessions WHERE checkout_state = 'ready' AND desired != 'removed'")
      .all()
      .map(toRecord);
  }

  /** Sessions whose checkout was being made when berthd last stopped. */
  checkoutsCreating(): SessionRecord[] {
    return this.prepare<[], Row>("SELECT * FROM sessions WHERE checkout_state = 'creating'").all().map(toRecord);
  }

  /** Sessions with a container that may be running. */
  live(): SessionRecord[] {
    return this.prepare<[], Row>("SELECT * FROM sessions WHERE state IN ('running', 'creating', 'stopping')").all().map(toRecord);
  }

  /** A checkout that cannot be made: the session fails (its gate stays shut) and waits for the user. */
  failCheckout(id: string, message: string, now: string): void {
    this.db
      .prepare("UPDATE sessions SET state = 'failed', error_code = 'CHECKOUT_FAILED', error_message = @message, generation = generation + 1, updated_at = @now WHERE id = @id")
      .run({ id, message, now });
  }

  /** Records the directory berth just made for the checkout, before git writes into it. */
  setCheckoutIdentity(id: string, identity: { dev: number; ino: number }): void {
    this.prepare('UPDATE sessions SET checkout_dev = @dev, checkout_ino = @ino WHERE id = @id').run({ id, ...identity });
  }

  /** The checkout is complete: the reconciler may now make the container (a new generation). */
  setCheckoutReady(id: string, c: { branch: string; base: string; baseSha: string }, now: string): SessionRecord | undefined {
    this.db
      .prepare("UPDATE sessions SET checkout_state = 'ready', branch = @branch, base = @base, base_sha = @baseSha, generation = generation + 1, updated_at = @now WHERE id = @id")
      .run({ id, ...c, now });
    return this.get(id);
  }

  /** Inserts the row that `build` makes, given how many write sessions share the main checkout now (atomically). */
  insertNew(project: string, build: (sharingMain: number) => SessionRecord, onInsert?: (rec: SessionRecord) => void): SessionRecord {
    return this.db.transaction(() => {
      const rec = build(this.sharingMain(project).length);
      this.insert(rec);
      onInsert?.(rec);
      return rec;
    })();
  }

  countByAgent(agent: string): number {
    return this.prepare<[string], { n: number }>('SELECT count(*) AS n FROM sessions WHERE agent = ?').get(agent)!.n;
  }

  /** The names of the first `limit` sessions of a project or an agent (oldest first), for errors that name them. */
  namesBy(column: 'project' | 'agent', value: string, limit = 10): string[] {
    return this.prepare<[string, number], string>(`SELECT name FROM sessions WHERE ${column} = ? ORDER BY created_at, id LIMIT ?`).pluck(true).all(value, limit);
  }

  /**
   * A page of the public view in creation order (keyset pagination), each row as the JSON text
   * SQLite writes (LISTED_JSON): the spec stays in the row, only its image and command are read, so
   * a page costs what it shows, not what the rows hold.
   * `active`: only sessions that run or are on their way to (what `berth ps` shows).
   */
  page(q: { project?: string; state?: SessionState; active?: boolean; limit: number; after?: { createdAt: string; id: string } }): ListedRow[] {
    const where: string[] = [];
    const args: Record<string, unknown> = { limit: q.limit };
    if (q.project) {
      where.push('project = @project');
      args.project = q.project;
    }
    if (q.state) {
      where.push('state = @state');
      args.state = q.state;
    }
    if (q.active) where.push(ACTIVE);
    if (q.after) {
      where.push('(created_at, id) > (@afterCreated, @afterId)');
      args.afterCreated = q.after.createdAt;
      args.afterId = q.after.id;
    }
    const sql = `SELECT created_at, id, ${LISTED_JSON} FROM sessions ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY created_at, id LIMIT @limit`;
    // Clients poll the same page (`berth ps -w`, editor plugins): while nothing in the database
    // changed, the page read last time is the page. total_changes() counts every row this
    // connection wrote (berthd's only one), data_version any other connection's commit.
    const stamp = this.changeStamp();
    const key = `${sql}\n${JSON.stringify(args)}`;
    const hit = this.pages.get(key);
    if (hit?.stamp === stamp) return hit.rows;
    const rows = this.prepare<[Record<string, unknown>], unknown>(sql).raw(true).all(args) as ListedRow[];
    if (this.pages.size >= 16) this.pages.delete(this.pages.keys().next().value!);
    this.pages.set(key, { stamp, rows });
    return rows;
  }

  private changeStamp(): string {
    const [changes, version] = this.prepare('SELECT total_changes(), data_version FROM pragma_data_version').raw(true).get() as [number, number];
    return `${changes}:${version}`;
  }

  /**
   * Capacity, atomically: when `cap` sessions other than `id` hold a slot (ACTIVE and not waiting),
   * `id` waits for one (queued_at set, with `priority`). Returns whether it waits.
   */
  queueIfFull(id: string, cap: number, now: string, priority: number): boolean {
    return this.db.transaction(() => {
      const holders = this.prepare<[string], number>(`SELECT count(*) FROM sessions WHERE id != ? AND queued_at IS NULL AND desired = 'running' AND ${ACTIVE}`)
        .pluck(true)
        .get(id)!;
      if (holders < cap) return false;
      this.prepare("UPDATE sessions SET queued_at = coalesce(queued_at, @now), priority = @priority, state = 'pending' WHERE id = @id").run({ id, now, priority });
      return true;
    })();
  }

  /** Gives free slots to the sessions waiting longest (highest priority first); returns their ids. */
  admit(cap: number): string[] {
    return this.db.transaction(() => {
      const holders = this.prepare<[], number>(`SELECT count(*) FROM sessions WHERE queued_at IS NULL AND desired = 'running' AND ${ACTIVE}`).pluck(true).get()!;
      const free = cap - holders;
      if (free <= 0) return [];
      const ids = this.prepare<[number], string>("SELECT id FROM sessions WHERE queued_at IS NOT NULL AND desired = 'running' ORDER BY priority DESC, queued_at, id LIMIT ?")
        .pluck(true)
        .all(free);
      for (const id of ids) this.prepare('UPDATE sessions SET queued_at = NULL, generation = generation + 1 WHERE id = ?').run(id);
      return ids;
    })();
  }

  /** Ids of the sessions whose container runs and should. */
  runningIds(): string[] {
    return this.prepare<[], string>("SELECT id FROM sessions WHERE state = 'running' AND desired = 'running'").pluck(true).all();
  }

  /**
   * A stuck agent is restarted: a new container (recreate) once `nextRestartAt` is reached (the
   * crash-loop backoff), counted in restartCount and in the stuck restarts in a row.
   */
  stuckRestart(id: string, nextRestartAt: string, now: string): void {
    this.prepare(
      `UPDATE sessions SET recreate = 1, restart_count = restart_count + 1, stuck_restarts = stuck_restarts + 1, crash_count = crash_count + 1,
         next_restart_at = @nextRestartAt, activity = NULL, generation = generation + 1, updated_at = @now WHERE id = @id AND desired = 'running'`,
    ).run({ id, nextRestartAt, now });
  }

  resetStuckRestarts(id: string): void {
    this.prepare('UPDATE sessions SET stuck_restarts = 0 WHERE id = ?').run(id);
  }

  /** Ids of the sessions that run or are on their way to (ACTIVE). */
  activeIds(): string[] {
    return this.prepare<[], string>(`SELECT id FROM sessions WHERE ${ACTIVE}`).pluck(true).all();
  }

  /** Ids of the sessions the reconciler must look at whatever the engine says (see UNSETTLED). */
  unsettledIds(): string[] {
    return this.prepare<[], { id: string }>(`SELECT id FROM sessions WHERE ${UNSETTLED}`).all().map((r) => r.id);
  }

  /** Every session that records a container: what the resync compares with the engine's listing. */
  withContainers(): { id: string; state: SessionState; containerId: string }[] {
    return this.db
      .prepare<[], { id: string; state: SessionState; containerId: string }>('SELECT id, state, container_id AS containerId FROM sessions WHERE container_id IS NOT NULL')
      .all();
  }

  /** Which of `ids` are sessions. */
  existing(ids: string[]): Set<string> {
    const out = new Set<string>();
    for (let i = 0; i < ids.length; i += 500) {
      const chunk = ids.slice(i, i + 500);
      const rows = this.prepare<string[], { id: string }>(`SELECT id FROM sessions WHERE id IN (${chunk.map(() => '?').join(',')})`).all(...chunk);
      for (const r of rows) out.add(r.id);
    }
    return out;
  }

  /** Every image a session not being removed names (as written; from the sessions_by_image index). */
  activeImages(): string[] {
    return this.prepare<[], { image: string }>(`SELECT DISTINCT json_extract(spec, '$.image') AS image FROM sessions WHERE desired != 'removed'`)
      .all()
      .map((r) => r.image);
  }

  /** Names and ids of the sessions, not being removed, whose spec names one of `images` (as written). */
  usingImage(images: string[]): { id: string; name: string; image: string }[] {
    if (!images.length) return [];
    return this.db
      .prepare<string[], { id: string; name: string; image: string }>(
        `SELECT id, name, json_extract(spec, '$.image') AS image FROM sessions
         WHERE json_extract(spec, '$.image') IN (${images.map(() => '?').join(',')}) AND desired != 'removed' ORDER BY created_at, id`,
      )
      .all(...images);
  }

  insert(s: SessionRecord): void {
    this.db
      .prepare(
        `INSERT INTO sessions (id, name, project, agent, mode, seq, container_name, spec, spec_hash, restart_policy, desired,
           generation, recreate, state, checkout_dir, checkout_state, budget_tokens, priority, created_at, updated_at)
         VALUES (@id, @name, @project, @agent, @mode, @seq, @containerName, @spec, @specHash, @restartPolicy, @desired,
           @generation, 0, @state, @checkoutDir, @checkoutState, @budgetTokens, @priority, @createdAt, @updatedAt)`,
      )
      .run({ ...s, spec: JSON.stringify(s.spec), checkoutIdentity: undefined, removeOpts: undefined, activity: undefined, gracefulDeadline: undefined, queuedAt: undefined, stuckRestarts: undefined, merged: undefined });
  }

  /** Changes desired state (an RPC's only write path); bumps the generation the reconciler checks. */
  setDesired(
    id: string,
    desired: SessionDesired,
    now: string,
    extra: {
      spec?: SessionSpec;
      specHash?: string;
      recreate?: boolean;
      restartPolicy?: RestartPolicy;
      resetCrashes?: boolean;
      removeOpts?: { force: boolean; deleteBranch: boolean };
      /** With desired `stopped`: stop only at this time, the agent is asked to finish first. */
      gracefulDeadline?: string;
    } = {},
  ): SessionRecord | undefined {
    return this.db.transaction(() => {
      // Any change of desired state ends a graceful stop in progress, unless it is one.
      const sets = [
        'desired = @desired',
        'generation = generation + 1',
        'updated_at = @now',
        'graceful_deadline = @gracefulDeadline',
        // Only a session that wants to run waits for a slot.
        "queued_at = CASE WHEN @desired = 'running' THEN queued_at ELSE NULL END",
      ];
      const args: Record<string, unknown> = { id, desired, now, gracefulDeadline: extra.gracefulDeadline ?? null };
      if (extra.spec) {
        sets.push('spec = @spec', 'spec_hash = @specHash');
        args.spec = JSON.stringify(extra.spec);
        args.specHash = extra.specHash;
      }
      if (extra.recreate !== undefined) {
        sets.push('recreate = @recreate');
        args.recreate = extra.recreate ? 1 : 0;
      }
      if (extra.restartPolicy) {
        sets.push('restart_policy = @restartPolicy');
        args.restartPolicy = extra.restartPolicy;
      }
      if (extra.removeOpts) {
        sets.push('remove_opts = @removeOpts');
        args.removeOpts = JSON.stringify(extra.removeOpts);
      }
      if (extra.resetCrashes) sets.push('crash_count = 0', 'next_restart_at = NULL', 'error_code = NULL', 'error_message = NULL');
      this.prepare(`UPDATE sessions SET ${sets.join(', ')} WHERE id = @id`).run(args);
      return this.get(id);
    })();
  }

  /**
   * Records what the reconciler observed or did, only if desired state has not moved since it read
   * `generation` (else the write is dropped and the reconciler runs again). Returns the new record.
   */
  observe(id: string, generation: number, patch: ObservedPatch, now: string): SessionRecord | undefined {
    return this.db.transaction(() => {
      const cur = this.get(id);
      if (!cur || cur.generation !== generation) return undefined;
      const keys = Object.keys(patch) as (keyof ObservedPatch)[];
      if (keys.length) {
        const sets = keys.map((k) => `${COLUMN[k]} = @${k}`);
        const args: Record<string, unknown> = { id, now };
        for (const k of keys) args[k] = k === 'recreate' ? (patch[k] ? 1 : 0) : patch[k];
        this.prepare(`UPDATE sessions SET ${sets.join(', ')}, updated_at = @now WHERE id = @id`).run(args);
      }
      return this.get(id);
    })();
  }

  /**
   * Deletes the row. With `removedAt`, a record of the session (its last public view) goes into
   * removed_sessions in the same transaction, so its logs can be found after it is gone.
   */
  remove(id: string, removedAt?: string): boolean {
    return this.db.transaction(() => {
      if (removedAt !== undefined) {
        this.prepare(
          `INSERT OR REPLACE INTO removed_sessions (id, name, project, agent, branch, exit_code, created_at, removed_at, view)
           SELECT id, name, project, agent, branch, exit_code, created_at, @removedAt, ${LISTED_JSON} FROM sessions WHERE id = @id`,
        ).run({ id, removedAt });
      }
      return this.prepare('DELETE FROM sessions WHERE id = ?').run(id).changes > 0;
    })();
  }
}
