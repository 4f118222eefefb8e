import { usageError } from './context.js';
import { BerthError, type BridgeRequestRecord, type Session, type SessionUsage, type UsageTotals } from '../protocol/index.js';
import { line, table } from './output.js';

/*
 * The human renderings of model usage through the Claude bridge: `berth usage`, the TOKENS column
 * of `berth ps`, and the --budget-tokens flags. Pure functions of protocol values, so they are
 * unit-tested without a daemon. Model names and error codes come from the upstream or the agent's
 * requests: they go through `table`/`line`, which escape them.
 */

type TokenCounts = Pick<UsageTotals, 'inputTokens' | 'outputTokens' | 'cacheReadTokens' | 'cacheCreationTokens'>;

/** All four token kinds together: what a budget counts. */
export function totalTokens(u: TokenCounts): number {
  return u.inputTokens + u.outputTokens + u.cacheReadTokens + u.cacheCreationTokens;
}

const UNITS = ['', 'k', 'M', 'B', 'T'];

/**
 * `950`, `12.3k`, `123k`, `1.2M`; `-` for none. One decimal below 100 of a unit, none above; a
 * value that rounds up to 1000 of a unit is written in the next (`999,999` is `1.0M`, not `1000k`).
 */
export function humanTokens(n: number | null | undefined): string {
  if (n === null || n === undefined || !Number.isFinite(n)) return '-';
  if (Math.abs(n) < 1000) return String(Math.round(n));
  let v = n;
  let unit = 0;
  let text = '';
  for (;;) {
    v /= 1000;
    unit++;
    text = Math.abs(v) < 99.95 ? v.toFixed(1) : v.toFixed(0);
    if (Math.abs(Number(text)) < 1000 || unit === UNITS.length - 1) break;
  }
  return `${text}${UNITS[unit]}`;
}

/** `1,234,567`: exact, for the one-session view. */
export function exactTokens(n: number): string {
  return n.toLocaleString('en-US');
}

/** `$12.34`; below a dollar four decimals, so a few requests do not read as `$0.00`. */
export function usd(n: number): string {
  return `$${Math.abs(n) < 1 ? n.toFixed(4) : n.toFixed(2)}`;
}

/**
 * Share of the budget used, in percent, rounded down to one decimal so that 100 means the budget is
 * reached (berth refuses further requests) and never shows for 99.96. null without a budget.
 */
export function budgetPercent(used: number, budget: number | null): number | null {
  if (budget === null || !(budget > 0)) return null;
  return Math.floor((used * 1000) / budget) / 10;
}

/** `200k (45.2%)`, `-` without a budget. */
export function budgetCell(used: number, budget: number | null): string {
  const pct = budgetPercent(used, budget);
  return pct === null ? '-' : `${humanTokens(budget)} (${pct.toFixed(1)}%)`;
}

/**
 * `--budget-tokens N`: a positive integer; `none` (where `allowNone`) is null, no budget.
 * Anything else is INVALID_PARAMS here, before a call is made.
 */
export function parseBudgetTokens(value: string, opts: { allowNone?: boolean } = {}): number | null {
  if (opts.allowNone && value === 'none') return null;
  const n = /^[1-9][0-9]*$/.test(value) ? Number(value) : NaN;
  if (!Number.isSafeInteger(n)) {
    throw usageError(`--budget-tokens takes a positive whole number of tokens${opts.allowNone ? ' or "none"' : ''}, got ${JSON.stringify(value)}`);
  }
  return n;
}

/** The TOKENS cell of `berth ps`. */
export function tokensCell(s: Pick<Session, 'usage'>): string {
  return humanTokens(s.usage ? totalTokens(s.usage) : null);
}

/** Sum of several usages (the TOTAL row). */
export function sumUsage(list: readonly UsageTotals[]): UsageTotals {
  const t: UsageTotals = { requests: 0, inputTokens: 0, outputTokens: 0, cacheReadTokens: 0, cacheCreationTokens: 0, costUsd: 0 };
  for (const u of list) {
    t.requests += u.requests;
    t.inputTokens += u.inputTokens;
    t.outputTokens += u.outputTokens;
    t.cacheReadTokens += u.cacheReadTokens;
    t.cacheCreationTokens += u.cacheCreationTokens;
    t.costUsd += u.costUsd;
  }
  return t;
}

function usageCells(u: UsageTotals): string[] {
  return [
    String(u.requests),
    humanTokens(u.inputTokens),
    humanTokens(u.outputTokens),
    humanTokens(u.cacheReadTokens),
    humanTokens(u.cacheCreationTokens),
    humanTokens(totalTokens(u)),
    usd(u.costUsd),
  ];
}

const USAGE_HEADERS = ['REQUESTS', 'INPUT', 'OUTPUT', 'CACHE READ', 'CACHE WRITE', 'TOKENS', 'COST'];

/** The sessions `berth usage` lists: those the bridge has seen a request from. */
export function sessionsWithUsage(list: readonly Session[]): (Session & { usage: UsageTotals })[] {
  return list.filter((s): s is Session & { usage: UsageTotals } => s.usage != null);
}

/** `berth usage`: one row per session with usage, then TOTAL. */
export function usageTable(list: readonly (Session & { usage: UsageTotals })[]): string {
  const rows = list.map((s) => [s.id, s.name, s.project, s.state, ...usageCells(s.usage), budgetCell(totalTokens(s.usage), s.budgetTokens)]);
  const total = sumUsage(list.map((s) => s.usage));
  rows.push(['TOTAL', '', '', '', ...usageCells(total), '']);
  return table(['ID', 'NAME', 'PROJECT', 'STATE', ...USAGE_HEADERS, 'BUDGET'], rows);
}

/** `berth usage ID`: the totals exact, the budget, and one row per model. */
export function sessionUsageText(u: SessionUsage): string {
  const used = totalTokens(u);
  const pct = budgetPercent(used, u.budgetTokens);
  const lines = [
    line`session         ${u.id}`,
    line`requests        ${u.requests}`,
    line`input           ${exactTokens(u.inputTokens)}`,
    line`output          ${exactTokens(u.outputTokens)}`,
    line`cache read      ${exactTokens(u.cacheReadTokens)}`,
    line`cache creation  ${exactTokens(u.cacheCreationTokens)}`,
    line`total tokens    ${exactTokens(used)}`,
    line`cost            ${usd(u.costUsd)} (estimate at list prices)`,
    pct === null || u.budgetTokens === null
      ? 'budget          none'
      : line`budget          ${exactTokens(u.budgetTokens)} tokens, ${pct.toFixed(1)}% used${used >= u.budgetTokens ? ' (exhausted)' : ''}`,
  ];
  const models = Object.entries(u.byModel).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const byModel = models.length ? `\n${table(['MODEL', ...USAGE_HEADERS], models.map(([m, t]) => [m, ...usageCells(t)]))}` : '';
  return `${lines.join('\n')}\n${byModel}`;
}

/** `2025-05-01T10:11:12Z` (milliseconds dropped); the text as given when it is not a time. */
function time(ts: string): string {
  const ms = Date.parse(ts);
  return Number.isNaN(ms) ? ts : new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** `850ms`, `1.2s`, `2m05s`. */
export function millis(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)}ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)}s`;
  const s = Math.round(ms / 1000);
  return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
}

/** `berth usage ID --requests`: the audit lines, oldest first as berthd sends them. */
export function requestsTable(list: readonly BridgeRequestRecord[]): string {
  return table(
    ['TIME', 'REQUEST', 'MODEL', 'STATUS', 'IN', 'OUT', 'CACHE R', 'CACHE W', 'DURATION', 'QUEUED', 'ERROR'],
    list.map((r) => [
      time(r.ts),
      `${r.method} ${r.path}`,
      r.model ?? '-',
      String(r.status),
      humanTokens(r.inputTokens),
      humanTokens(r.outputTokens),
      humanTokens(r.cacheReadTokens),
      humanTokens(r.cacheCreationTokens),
      millis(r.durationMs),
      millis(r.queuedMs),
      r.error ?? '',
    ]),
  );
}
