import type { Agent } from '@berth/client-sdk/protocol';
import type { Db } from './db.js';

interface Row {
  name: string;
  image: string | null;
  command: string;
  env: string;
  role: string | null;
  read_only: number;
  limits: string;
  restart_policy: string;
  network: string | null;
  read_only_rootfs: number;
  cap_add: string;
  secrets: string;
  budget_tokens: number | null;
  stuck_after_sec: number | null;
  on_stuck: string;
  created_at: string;
  updated_at: string;
}

const toAgent = (r: Row): Agent => ({
  name: r.name,
  image: r.image,
  command: JSON.parse(r.command) as string[],
  env: JSON.parse(r.env) as Record<string, string>,
  role: r.role,
  readOnly: r.read_only === 1,
  limits: JSON.parse(r.limits) as Agent['limits'],
  restartPolicy: r.restart_policy as Agent['restartPolicy'],
  network: r.network as Agent['network'],
  readOnlyRootfs: r.read_only_rootfs === 1,
  capAdd: JSON.parse(r.cap_add) as string[],
  secrets: JSON.parse(r.secrets) as Record<string, string>,
  budgetTokens: r.budget_tokens,
  stuckAfterSec: r.stuck_after_sec,
  onStuck: r.on_stuck as Agent['onStuck'],
  createdAt: r.created_at,
  updatedAt: r.updated_at,
});

/** The `agents` table. */
export class AgentsRepo {
  private readonly stmts;

  constructor(private readonly db: Db) {
    this.stmts = {
      get: db.prepare<[string], Row>('SELECT * FROM agents WHERE name = ?'),
      list: db.prepare<[], Row>('SELECT * FROM agents ORDER BY name'),
      upsert: db.prepare(
        `INSERT INTO agents (name, image, command, env, role, read_only, limits, restart_policy, network, read_only_rootfs,
           cap_add, secrets, budget_tokens, stuck_after_sec, on_stuck, created_at, updated_at)
         VALUES (@name, @image, @command, @env, @role, @readOnly, @limits, @restartPolicy, @network, @readOnlyRootfs,
           @capAdd, @secrets, @budgetTokens, @stuckAfterSec, @onStuck, @createdAt, @updatedAt)
         ON CONFLICT(name) DO UPDATE SET image = excluded.image, command = excluded.command, env = excluded.env,
           role = excluded.role, read_only = excluded.read_only, limits = excluded.limits,
           restart_policy = excluded.restart_policy, network = excluded.network,
           read_only_rootfs = excluded.read_only_rootfs, cap_add = excluded.cap_add, secrets = excluded.secrets,
           budget_tokens = excluded.budget_tokens, stuck_after_sec = excluded.stuck_after_sec, on_stuck = excluded.on_stuck,
           updated_at = excluded.updated_at`,
      ),
      remove: db.prepare<[string]>('DELETE FROM agents WHERE name = ?'),
    };
  }

  get(name: string): Agent | undefined {
    const r = this.stmts.get.get(name);
    return r && toAgent(r);
  }

  list(): Agent[] {
    return this.stmts.list.all().map(toAgent);
  }

  /** Inserts or replaces the definition; `createdAt` of an existing agent is kept. Returns whether it was new. */
  upsert(a: Agent): { agent: Agent; created: boolean } {
    return this.db.transaction(() => {
      const before = this.stmts.get.get(a.name);
      this.stmts.upsert.run({
        name: a.name,
        image: a.image,
        command: JSON.stringify(a.command),
        env: JSON.stringify(a.env),
        role: a.role,
        readOnly: a.readOnly ? 1 : 0,
        limits: JSON.stringify(a.limits),
        restartPolicy: a.restartPolicy,
        network: a.network,
        readOnlyRootfs: a.readOnlyRootfs ? 1 : 0,
        capAdd: JSON.stringify(a.capAdd),
        secrets: JSON.stringify(a.secrets),
        // Fields newer than some callers' records: their defaults.
        budgetTokens: a.budgetTokens ?? null,
        stuckAfterSec: a.stuckAfterSec ?? null,
        onStuck: a.onStuck ?? 'restart',
        createdAt: a.createdAt,
        updatedAt: a.updatedAt,
      });
      return { agent: toAgent(this.stmts.get.get(a.name)!), created: before === undefined };
    })();
  }

  remove(name: string): boolean {
    return this.db.transaction(() => this.stmts.remove.run(name).changes > 0)();
  }
}
