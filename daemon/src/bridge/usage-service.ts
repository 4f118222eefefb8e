import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { BerthError, type BridgeRequestRecord, type SessionUsage } from '@berth/client-sdk/protocol';
import type { SessionRecord, SessionsRepo } from '../store/sessions.js';
import type { UsageRepo } from '../store/usage.js';
import type { AuditLog } from './audit.js';

const NONE = { requests: 0, inputTokens: 0, outputTokens: 0, cacheReadTokens: 0, cacheCreationTokens: 0, costUsd: 0 };

/** `sessions.usage` and `sessions.requests`: also for removed sessions, whose usage and audit stay. */
export class UsageService {
  constructor(
    private readonly d: { sessions: SessionsRepo; usage: UsageRepo; audit: AuditLog; resolve: (idOrName: string) => SessionRecord },
  ) {}

  usage(idOrName: string): SessionUsage {
    const id = this.idOf(idOrName);
    return {
      id,
      ...(this.d.sessions.usage(id) ?? NONE),
      budgetTokens: this.d.sessions.get(id)?.budgetTokens ?? null,
      byModel: this.d.usage.byModel(id),
    };
  }

  requests(idOrName: string, limit = 1000): BridgeRequestRecord[] {
    return this.d.audit.read(this.idOf(idOrName), limit);
  }

  private idOf(idOrName: string): string {
    try {
      return this.d.resolve(idOrName).id;
    } catch (err) {
      if (!(err instanceof BerthError) || err.code !== 'SESSION_NOT_FOUND' || !/^[0-9a-f]{4,12}$/.test(idOrName)) throw err;
      // A removed session: by its id (or a prefix) in what outlives it.
      const ids = this.d.usage.idsStartingWith(idOrName);
      if (ids.length > 1) throw new BerthError('SESSION_AMBIGUOUS', `more than one session id starts with ${idOrName}`, { details: { prefix: idOrName } });
      if (ids.length === 1) return ids[0]!;
      if (idOrName.length === 12 && existsSync(join(this.d.audit.dir, `${idOrName}.jsonl`))) return idOrName;
      throw err;
    }
  }
}
