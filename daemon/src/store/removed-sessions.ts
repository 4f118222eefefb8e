import type { Db } from './db.js';
import type { ListedRow } from './session-rows.js';

/** A removed session as berth keeps it: enough to find its logs and to list it. */
export interface RemovedSessionRecord {
  id: string;
  name: string;
  project: string;
  agent: string;
  branch: string | null;
  exitCode: number | null;
  createdAt: string;
  removedAt: string;
}

const COLUMNS = 'id, name, project, agent, branch, exit_code AS exitCode, created_at AS createdAt, removed_at AS removedAt';

/** The `removed_sessions` table (written by SessionsRepo.remove in the deleting transaction). */
export class RemovedSessionsRepo {
  constructor(private readonly db: Db) {}

  get(id: string): RemovedSessionRecord | undefined {
    return this.db.prepare<[string], RemovedSessionRecord>(`SELECT ${COLUMNS} FROM removed_sessions WHERE id = ?`).get(id);
  }

  /** The newest removed session of that name (names are reused by new sessions). */
  byName(name: string): RemovedSessionRecord | undefined {
    return this.db.prepare<[string], RemovedSessionRecord>(`SELECT ${COLUMNS} FROM removed_sessions WHERE name = ? ORDER BY removed_at DESC, id LIMIT 1`).get(name);
  }

  byIdPrefix(prefix: string): RemovedSessionRecord[] {
    const escaped = prefix.replace(/[%_\\]/g, (c) => `\\${c}`);
    return this.db.prepare<[string], RemovedSessionRecord>(`SELECT ${COLUMNS} FROM removed_sessions WHERE id LIKE ? ESCAPE '\\' LIMIT 2`).all(`${escaped}%`);
  }

  /** A page in creation order (keyset, as SessionsRepo.page), each the Session as listed when removed, with `removedAt`. */
  page(q: { project?: string; limit: number; after?: { createdAt: string; id: string } }): ListedRow[] {
    const where: string[] = [];
    const args: Record<string, unknown> = { limit: q.limit };
    if (q.project) {
      where.push('project = @project');
      args.project = q.project;
    }
    if (q.after) {
      where.push('(created_at, id) > (@afterCreated, @afterId)');
      args.afterCreated = q.after.createdAt;
      args.afterId = q.after.id;
    }
    const sql = `SELECT created_at, id, json_set(view, '$.removedAt', removed_at) FROM removed_sessions ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY created_at, id LIMIT @limit`;
    return this.db.prepare<[Record<string, unknown>], unknown>(sql).raw(true).all(args) as ListedRow[];
  }

  /** Forgets sessions removed before `iso` (the log retention's maintenance job); returns their ids. */
  pruneRemovedBefore(iso: string): string[] {
    return this.db.transaction(() => {
      const ids = this.db.prepare<[string], string>('SELECT id FROM removed_sessions WHERE removed_at < ?').pluck(true).all(iso);
      this.db.prepare('DELETE FROM removed_sessions WHERE removed_at < ?').run(iso);
      return ids;
    })();
  }
}
