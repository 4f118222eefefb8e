import type { RestartPolicy, Session, SessionDesired, SessionMode, SessionState } from '@berth/client-sdk/protocol';
import type { SessionSpec } from '../sessions/spec.js';
import type { Db } from './db.js';

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
  branch: string | null;
  base: string | null;
  baseSha: string | null;
  createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
  updatedAt: string;
}

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
  constructor(private readonly db: Db) {}

  get(id: string): SessionRecord | undefined {
    const r = this.db.prepare<[string], Row>('SELECT * FROM sessions WHERE id = ?').get(id);
    return r && toRecord(r);
  }

  byName(name: string): SessionRecord | undefined {
    const r = this.db.prepare<[string], Row>('SELECT * FROM sessions WHERE name = ?').get(name);
    return r && toRecord(r);
  }

  byIdPrefix(prefix: string): SessionRecord[] {
    const escaped = prefix.replace(/[%_\\]/g, (c) => `\\${c}`);
    return this.db
      .prepare<[string], Row>("SELECT * FROM sessions WHERE id LIKE ? ESCAPE '\\' LIMIT 2")
      .all(`${escaped}%`)
      .map(toRecord);
  }

  all(): SessionRecord[] {
    return this.db.prepare<[], Row>('SELECT * FROM sessions ORDER BY created_at, id').all().map(toRecord);
  }

  ids(): string[] {
    return this.db.prepare<[], { id: string }>('SELECT id FROM sessions').all().map((r) => r.id);
  }

  countByProject(project: string): number {
    return this.db.prepare<[string], { n: number }>('SELECT count(*) AS n FROM sessions WHERE project = ?').get(project)!.n;
  }

  /** Write sessions working in the project's main checkout (worktrees: when-shared). */
  sharingMain(project: string): SessionRecord[] {
    return this.db
      .prepare<[string], Row>("SELECT * FROM sessions WHERE project = ? AND mode = 'write' AND checkout_dir IS NULL AND desired != 'removed'")
      .all(project)
      .map(toRecord);
  }

  setCheckout(id: string, c: { checkoutDir: string | null; branch: string | null; base: string | null; baseSha: string | null }, spec: SessionSpec, specHash: string): void {
    this.db
      .prepare('UPDATE sessions SET checkout_dir = @checkoutDir, branch = @branch, base = @base, base_sha = @baseSha, spec = @spec, spec_hash = @specHash WHERE id = @id')
      .run({ id, ...c, spec: JSON.stringify(spec), specHash });
  }

  countByAgent(agent: string): number {
    return this.db.prepare<[string], { n: number }>('SELECT count(*) AS n FROM sessions WHERE agent = ?').get(agent)!.n;
  }

  /** Keyset pagination in creation order. */
  page(q: { project?: string; state?: SessionState; limit: number; after?: { createdAt: string; id: string } }): SessionRecord[] {
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
    if (q.after) {
      where.push('(created_at, id) > (@afterCreated, @afterId)');
      args.afterCreated = q.after.createdAt;
      args.afterId = q.after.id;
    }
    const sql = `SELECT * FROM sessions ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY created_at, id LIMIT @limit`;
    return this.db.prepare<[Record<string, unknown>], Row>(sql).all(args).map(toRecord);
  }

  insert(s: SessionRecord): void {
    this.db
      .prepare(
        `INSERT INTO sessions (id, name, project, agent, mode, seq, container_name, spec, spec_hash, restart_policy, desired,
           generation, recreate, state, created_at, updated_at)
         VALUES (@id, @name, @project, @agent, @mode, @seq, @containerName, @spec, @specHash, @restartPolicy, @desired,
           @generation, 0, @state, @createdAt, @updatedAt)`,
      )
      .run({ ...s, spec: JSON.stringify(s.spec) });
  }

  /** Changes desired state (an RPC's only write path); bumps the generation the reconciler checks. */
  setDesired(
    id: string,
    desired: SessionDesired,
    now: string,
    extra: { spec?: SessionSpec; specHash?: string; recreate?: boolean; restartPolicy?: RestartPolicy; resetCrashes?: boolean } = {},
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
      if (extra.resetCrashes) sets.push('crash_count = 0', 'next_restart_at = NULL', 'error_code = NULL', 'error_message = NULL');
      this.db.prepare(`UPDATE sessions SET ${sets.join(', ')} WHERE id = @id`).run(args);
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
        this.db.prepare(`UPDATE sessions SET ${sets.join(', ')}, updated_at = @now WHERE id = @id`).run(args);
      }
      return this.get(id);
    })();
  }

  remove(id: string): boolean {
    return this.db.prepare('DELETE FROM sessions WHERE id = ?').run(id).changes > 0;
  }
}
