import type { RestartPolicy, Session, SessionDesired, SessionMode, SessionState } from '@berth/client-sdk/protocol';
import type { SessionSpec } from '../shared/session-spec.js';
import type { Statement } from 'better-sqlite3';
import type { Db } from './db.js';
import { ACTIVE, UNSETTLED } from './migrations.js';

/** A session as the daemon keeps it: the public view plus what the reconciler needs. */
export interface SessionRecord {
  id: string;
  name: string;
  project: string;
  agent: string;
  mode: SessionMode;
  seq: number;
  containerName: string;
  spec: SessionSpec;
  specHash: string;
  restartPolicy: RestartPolicy;
  desired: SessionDesired;
  generation: number;
  recreate: boolean;
  state: SessionState;
  containerId: string | null;
  restartCount: number;
  crashCount: number;
  nextRestartAt: string | null;
  handledFinish: string | null;
  errorCode: string | null;
  errorMessage: string | null;
  exitCode: number | null;
  /** The session's own clone, when it has one. */
  checkoutDir: string | null;
  /**
   * `creating` from the moment the row exists until the clone is complete: the reconciler makes no
   * container for it meanwhile. `ready` once it is. NULL for sessions with no checkout of their own.
   */
  checkoutState: CheckoutState | null;
  /** Device and inode of the checkout directory berth made (removal checks them). */
  checkoutIdentity: { dev: number; ino: number } | null;
  /** How the user asked to remove it (set with desired = removed; the last reconcile step uses it). */
  removeOpts: { force: boolean; deleteBranch: boolean } | null;
  branch: string | null;
  base: string | null;
  baseSha: string | null;
  createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
  updatedAt: string;
}

export type CheckoutState = 'creating' | 'ready';

/** Fields the reconciler writes after observing or acting (never desired state). */
export type ObservedPatch = Partial<
  Pick<
    SessionRecord,
    | 'state'
    | 'containerId'
    | 'restartCount'
    | 'crashCount'
    | 'nextRestartAt'
    | 'handledFinish'
    | 'errorCode'
    | 'errorMessage'
    | 'exitCode'
    | 'startedAt'
    | 'finishedAt'
    | 'recreate'
  >
>;

interface Row {
  id: string;
  name: string;
  project: string;
  agent: string;
  mode: string;
  seq: number;
  container_name: string;
  spec: string;
  spec_hash: string;
  restart_policy: string;
  desired: string;
  generation: number;
  recreate: number;
  state: string;
  container_id: string | null;
  restart_count: number;
  crash_count: number;
  next_restart_at: string | null;
  handled_finish: string | null;
  error_code: string | null;
  error_message: string | null;
  exit_code: number | null;
  checkout_dir: string | null;
  checkout_state: string | null;
  checkout_dev: number | null;
  checkout_ino: number | null;
  remove_opts: string | null;
  branch: string | null;
  base: string | null;
  base_sha: string | null;
  created_at: string;
  started_at: string | null;
  finished_at: string | null;
  updated_at: string;
}

const toRecord = (r: Row): SessionRecord => ({
  id: r.id,
  name: r.name,
  project: r.project,
  agent: r.agent,
  mode: r.mode as SessionMode,
  seq: r.seq,
  containerName: r.container_name,
  spec: JSON.parse(r.spec) as SessionSpec,
  specHash: r.spec_hash,
  restartPolicy: r.restart_policy as RestartPolicy,
  desired: r.desired as SessionDesired,
  generation: r.generation,
  recreate: r.recreate === 1,
  state: r.state as SessionState,
  containerId: r.container_id,
  restartCount: r.restart_count,
  crashCount: r.crash_count,
  nextRestartAt: r.next_restart_at,
  handledFinish: r.handled_finish,
  errorCode: r.error_code,
  errorMessage: r.error_message,
  exitCode: r.exit_code,
  checkoutDir: r.checkout_dir,
  checkoutState: r.checkout_state as CheckoutState | null,
  checkoutIdentity: r.checkout_dev !== null && r.checkout_ino !== null ? { dev: r.checkout_dev, ino: r.checkout_ino } : null,
  removeOpts: r.remove_opts ? (JSON.parse(r.remove_opts) as SessionRecord['removeOpts']) : null,
  branch: r.branch,
  base: r.base,
  baseSha: r.base_sha,
  createdAt: r.created_at,
  startedAt: r.started_at,
  finishedAt: r.finished_at,
  updatedAt: r.updated_at,
});

/** The public view of a session: no spec internals, no secrets. */
export function toSession(r: SessionRecord): Session {
  return {
    id: r.id,
    name: r.name,
    project: r.project,
    agent: r.agent,
    mode: r.mode,
    desired: r.desired,
    state: r.state,
    containerId: r.containerId,
    containerName: r.containerName,
    image: r.spec.image,
    command: r.spec.command,
    restartPolicy: r.restartPolicy,
    restartCount: r.restartCount,
    nextRestartAt: r.nextRestartAt,
    error: r.errorCode ? { code: r.errorCode, message: r.errorMessage ?? '' } : null,
    exitCode: r.exitCode,
    checkout: r.checkoutDir && r.branch && r.base ? { dir: r.checkoutDir, branch: r.branch, base: r.base } : null,
    createdAt: r.createdAt,
    startedAt: r.startedAt,
    finishedAt: r.finishedAt,
  };
}

/**
 * The columns a list row needs, image and command read out of the spec by SQLite. Read as arrays
 * (better-sqlite3's raw mode), which halves the cost of a page against one object per row.
 */
const LISTED = `id, name, project, agent, mode, desired, state, container_id, container_name,
  json_extract(spec, '$.image'), json_extract(spec, '$.command'),
  restart_policy, restart_count, next_restart_at, error_code, error_message, exit_code,
  checkout_dir, branch, base, created_at, started_at, finished_at`;

type ListedRow = [
  id: string, name: string, project: string, agent: string, mode: string, desired: string, state: string,
  containerId: string | null, containerName: string, image: string, command: string,
  restartPolicy: string, restartCount: number, nextRestartAt: string | null, errorCode: string | null, errorMessage: string | null,
  exitCode: number | null, checkoutDir: string | null, branch: string | null, base: string | null,
  createdAt: string, startedAt: string | null, finishedAt: string | null,
];

const toListed = ([
  id, name, project, agent, mode, desired, state, containerId, containerName, image, command,
  restartPolicy, restartCount, nextRestartAt, errorCode, errorMessage, exitCode, checkoutDir, branch, base,
  createdAt, startedAt, finishedAt,
]: ListedRow): Session => ({
  id,
  name,
  project,
  agent,
  mode: mode as SessionMode,
  desired: desired as SessionDesired,
  state: state as SessionState,
  containerId,
  containerName,
  image,
  command: JSON.parse(command) as string[],
  restartPolicy: restartPolicy as RestartPolicy,
  restartCount,
  nextRestartAt,
  error: errorCode ? { code: errorCode, message: errorMessage ?? '' } : null,
  exitCode,
  checkout: checkoutDir && branch && base ? { dir: checkoutDir, branch, base } : null,
  createdAt,
  startedAt,
  finishedAt,
});

const COLUMN: Record<keyof ObservedPatch, string> = {
  state: 'state',
  containerId: 'container_id',
  restartCount: 'restart_count',
  crashCount: 'crash_count',
  nextRestartAt: 'next_restart_at',
  handledFinish: 'handled_finish',
  errorCode: 'error_code',
  errorMessage: 'error_message',
  exitCode: 'exit_code',
  startedAt: 'started_at',
  finishedAt: 'finished_at',
  recreate: 'recreate',
};

/** The `sessions` table. */
export class SessionsRepo {
  private readonly statements = new Map<string, Statement>();

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
  insertNew(project: string, build: (sharingMain: number) => SessionRecord): SessionRecord {
    return this.db.transaction(() => {
      const rec = build(this.sharingMain(project).length);
      this.insert(rec);
      return rec;
    })();
  }

  countByAgent(agent: string): number {
    return this.prepare<[string], { n: number }>('SELECT count(*) AS n FROM sessions WHERE agent = ?').get(agent)!.n;
  }

  /**
   * A page of the public view in creation order (keyset pagination). The spec stays in the row:
   * only its image and command are read, so a page costs what it shows, not what the rows hold.
   * `active`: only sessions that run or are on their way to (what `berth ps` shows).
   */
  page(q: { project?: string; state?: SessionState; active?: boolean; limit: number; after?: { createdAt: string; id: string } }): Session[] {
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
    const sql = `SELECT ${LISTED} FROM sessions ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY created_at, id LIMIT @limit`;
    return (this.prepare<[Record<string, unknown>], unknown>(sql).raw(true).all(args) as ListedRow[]).map(toListed);
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
           generation, recreate, state, checkout_dir, checkout_state, created_at, updated_at)
         VALUES (@id, @name, @project, @agent, @mode, @seq, @containerName, @spec, @specHash, @restartPolicy, @desired,
           @generation, 0, @state, @checkoutDir, @checkoutState, @createdAt, @updatedAt)`,
      )
      .run({ ...s, spec: JSON.stringify(s.spec), checkoutIdentity: undefined, removeOpts: undefined });
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
    } = {},
  ): SessionRecord | undefined {
    return this.db.transaction(() => {
      const sets = ['desired = @desired', 'generation = generation + 1', 'updated_at = @now'];
      const args: Record<string, unknown> = { id, desired, now };
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

  remove(id: string): boolean {
    return this.prepare('DELETE FROM sessions WHERE id = ?').run(id).changes > 0;
  }
}
