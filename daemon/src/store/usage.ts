import type { UsageTotals } from '@berth/client-sdk/protocol';
import type { Db } from './db.js';
import { USAGE_JSON } from './session-rows.js';

/** What one bridged request adds to a session's usage. */
export interface UsageDelta {
  requests: number;
  inputTokens: number;
  outputTokens: number;
  cacheReadTokens: number;
  cacheCreationTokens: number;
  costNanos: number;
}

/**
 * The `session_usage` table: model usage per session and model. Rows outlive their session (usage
 * of a removed session stays readable by its id).
 */
export class UsageRepo {
  private readonly stmts;

  constructor(db: Db) {
    this.stmts = {
      add: db.prepare(
        `INSERT INTO session_usage (session_id, model, requests, input_tokens, output_tokens, cache_read_tokens, cache_creation_tokens, cost_nanos)
         VALUES (@session, @model, @requests, @inputTokens, @outputTokens, @cacheReadTokens, @cacheCreationTokens, @costNanos)
         ON CONFLICT (session_id, model) DO UPDATE SET requests = requests + excluded.requests,
           input_tokens = input_tokens + excluded.input_tokens, output_tokens = output_tokens + excluded.output_tokens,
           cache_read_tokens = cache_read_tokens + excluded.cache_read_tokens,
           cache_creation_tokens = cache_creation_tokens + excluded.cache_creation_tokens, cost_nanos = cost_nanos + excluded.cost_nanos`,
      ),
      byModel: db.prepare<[string], { model: string; totals: string }>(
        `SELECT model, ${USAGE_JSON} AS totals FROM session_usage WHERE session_id = ? GROUP BY model ORDER BY model`,
      ),
      tokens: db
        .prepare<[string], number>(
          'SELECT coalesce(sum(input_tokens + output_tokens + cache_read_tokens + cache_creation_tokens), 0) FROM session_usage WHERE session_id = ?',
        )
        .pluck(true),
      ids: db.prepare<[string], string>("SELECT DISTINCT session_id FROM session_usage WHERE session_id LIKE ? ESCAPE '\\' LIMIT 2").pluck(true),
    };
  }

  add(session: string, model: string, d: UsageDelta): void {
    this.stmts.add.run({ session, model, ...d });
  }

  byModel(session: string): Record<string, UsageTotals> {
    const out: Record<string, UsageTotals> = {};
    for (const r of this.stmts.byModel.all(session)) out[r.model] = JSON.parse(r.totals) as UsageTotals;
    return out;
  }

  /** Every token the session used (the four kinds together): what a budget counts. */
  tokens(session: string): number {
    return this.stmts.tokens.get(session) ?? 0;
  }

  /** Session ids with usage starting with `prefix` (at most two: enough to tell one from ambiguous). */
  idsStartingWith(prefix: string): string[] {
    return this.stmts.ids.all(`${prefix.replace(/[%_\\]/g, (c) => `\\${c}`)}%`);
  }
}
