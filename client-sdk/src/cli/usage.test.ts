import { describe, expect, it } from 'vitest';
import type { BridgeRequestRecord, Session, SessionUsage, UsageTotals } from '../protocol/index.js';
import { run } from './index.js';
import {
  budgetCell,
  budgetPercent,
  humanTokens,
  millis,
  parseBudgetTokens,
  requestsTable,
  sessionsWithUsage,
  sessionUsageText,
  sumUsage,
  tokensCell,
  totalTokens,
  usageTable,
  usd,
} from './usage.js';

const ESC = '\x1b';

function usage(over: Partial<UsageTotals> = {}): UsageTotals {
  return { requests: 1, inputTokens: 0, outputTokens: 0, cacheReadTokens: 0, cacheCreationTokens: 0, costUsd: 0, ...over };
}

function session(over: Partial<Session>): Session {
  return {
    id: '0123456789ab',
    name: 's',
    project: 'web',
    agent: 'fixer',
    mode: 'write',
    desired: 'running',
    state: 'running',
    containerId: null,
    containerName: 'berth-s',
    image: 'img',
    command: [],
    restartPolicy: 'on-failure',
    restartCount: 0,
    nextRestartAt: null,
    error: null,
    exitCode: null,
    checkout: null,
    createdAt: '2025-01-01T00:00:00.000Z',
    startedAt: null,
    finishedAt: null,
    usage: null,
    activity: null,
    budgetTokens: null,
    ...over,
  };
}

/** The table's rows as cells (columns are two or more spaces apart; no cell here has two spaces). */
function rows(text: string): string[][] {
  return text.trimEnd().split('\n').map((l) => l.split(/ {2,}/));
}

describe('humanTokens', () => {
  it('writes small counts exactly and larger ones with a unit', () => {
    expect(humanTokens(0)).toBe('0');
    expect(humanTokens(999)).toBe('999');
    expect(humanTokens(1000)).toBe('1.0k');
    expect(humanTokens(1234)).toBe('1.2k');
    expect(humanTokens(12_345)).toBe('12.3k');
    expect(humanTokens(123_456)).toBe('123k');
    expect(humanTokens(1_234_567)).toBe('1.2M');
    expect(humanTokens(45_600_000)).toBe('45.6M');
    expect(humanTokens(7_800_000_000)).toBe('7.8B');
  });

  it('moves to the next unit where rounding would reach 1000', () => {
    expect(humanTokens(99_949)).toBe('99.9k');
    expect(humanTokens(99_950)).toBe('100k');
    expect(humanTokens(999_499)).toBe('999k');
    expect(humanTokens(999_999)).toBe('1.0M');
    expect(humanTokens(999_999_999)).toBe('1.0B');
  });

  it('is - for no usage', () => {
    expect(humanTokens(null)).toBe('-');
    expect(humanTokens(undefined)).toBe('-');
    expect(tokensCell({ usage: null })).toBe('-');
  });

  it('sums all four kinds for the ps column', () => {
    const u = usage({ inputTokens: 1000, outputTokens: 200, cacheReadTokens: 10_000, cacheCreationTokens: 1100 });
    expect(totalTokens(u)).toBe(12_300);
    expect(tokensCell({ usage: u })).toBe('12.3k');
  });
});

describe('budget', () => {
  it('is the share used, rounded down so 100% means reached', () => {
    expect(budgetPercent(50_000, 200_000)).toBe(25);
    expect(budgetPercent(1, 3)).toBe(33.3);
    expect(budgetPercent(2, 3)).toBe(66.6);
    expect(budgetPercent(99_999, 100_000)).toBe(99.9);
    expect(budgetPercent(100_000, 100_000)).toBe(100);
    expect(budgetPercent(150_000, 100_000)).toBe(150);
    expect(budgetPercent(0, 100)).toBe(0);
  });

  it('is none without a budget', () => {
    expect(budgetPercent(10, null)).toBeNull();
    expect(budgetCell(10, null)).toBe('-');
  });

  it('reads as budget and share in a cell', () => {
    expect(budgetCell(90_500, 200_000)).toBe('200k (45.2%)');
    expect(budgetCell(0, 1_000_000)).toBe('1.0M (0.0%)');
  });

  it('takes a positive whole number, and none only where it clears', () => {
    expect(parseBudgetTokens('200000')).toBe(200_000);
    expect(parseBudgetTokens('1')).toBe(1);
    expect(parseBudgetTokens('none', { allowNone: true })).toBeNull();
    for (const bad of ['0', '-5', '1.5', '1e6', '200k', '', ' 12', '0x10', '99999999999999999999']) {
      expect(() => parseBudgetTokens(bad, { allowNone: true }), bad).toThrow(expect.objectContaining({ code: 'INVALID_PARAMS' }));
    }
    expect(() => parseBudgetTokens('none')).toThrow(expect.objectContaining({ code: 'INVALID_PARAMS' }));
  });
});

describe('usd', () => {
  it('keeps cents of cents below a dollar', () => {
    expect(usd(0)).toBe('$0.0000');
    expect(usd(0.00412)).toBe('$0.0041');
    expect(usd(12.346)).toBe('$12.35');
  });
});

describe('usageTable', () => {
  const a = session({ id: 'aaaaaaaaaaaa', name: 'one', budgetTokens: 100_000, usage: usage({ requests: 3, inputTokens: 1500, outputTokens: 500, cacheReadTokens: 20_000, cacheCreationTokens: 3000, costUsd: 0.25 }) });
  const b = session({ id: 'bbbbbbbbbbbb', name: 'two', state: 'stopped', usage: usage({ requests: 2, inputTokens: 500, outputTokens: 1500, cacheReadTokens: 0, cacheCreationTokens: 0, costUsd: 1.5 }) });
  const none = session({ id: 'cccccccccccc', name: 'idle' });

  it('lists only sessions with usage', () => {
    expect(sessionsWithUsage([a, none, b]).map((s) => s.name)).toEqual(['one', 'two']);
  });

  it('has a row per session and a TOTAL row summing every column', () => {
    const t = rows(usageTable(sessionsWithUsage([a, none, b])));
    expect(t[0]).toEqual(['ID', 'NAME', 'PROJECT', 'STATE', 'REQUESTS', 'INPUT', 'OUTPUT', 'CACHE READ', 'CACHE WRITE', 'TOKENS', 'COST', 'BUDGET']);
    expect(t[1]).toEqual(['aaaaaaaaaaaa', 'one', 'web', 'running', '3', '1.5k', '500', '20.0k', '3.0k', '25.0k', '$0.2500', '100k (25.0%)']);
    expect(t[2]).toEqual(['bbbbbbbbbbbb', 'two', 'web', 'stopped', '2', '500', '1.5k', '0', '0', '2.0k', '$1.50', '-']);
    expect(t).toHaveLength(4);
    const total = usageTable(sessionsWithUsage([a, b])).trimEnd().split('\n').at(-1)!;
    expect(total.split(/\s+/)).toEqual(['TOTAL', '5', '2.0k', '2.0k', '20.0k', '3.0k', '27.0k', '$1.75']);
  });

  it('sums usage exactly', () => {
    expect(sumUsage([a.usage!, b.usage!])).toEqual({ requests: 5, inputTokens: 2000, outputTokens: 2000, cacheReadTokens: 20_000, cacheCreationTokens: 3000, costUsd: 1.75 });
    expect(sumUsage([])).toEqual(usage({ requests: 0 }));
  });

  it('escapes a name an agent chose', () => {
    const t = usageTable(sessionsWithUsage([session({ name: `x${ESC}]0;t\x07\ny`, usage: usage() })]));
    expect(t).not.toContain(ESC);
    expect(t.trimEnd().split('\n')).toHaveLength(3);
  });
});

describe('sessionUsageText', () => {
  const u: SessionUsage = {
    id: 'aaaaaaaaaaaa',
    requests: 4,
    inputTokens: 1_234_567,
    outputTokens: 89_000,
    cacheReadTokens: 0,
    cacheCreationTokens: 10,
    costUsd: 3.2,
    budgetTokens: 2_000_000,
    byModel: {
      'claude-sonnet-4': usage({ requests: 3, inputTokens: 1_200_000, outputTokens: 80_000, costUsd: 3 }),
      'claude-haiku-4': usage({ requests: 1, inputTokens: 34_567, outputTokens: 9000, cacheCreationTokens: 10, costUsd: 0.2 }),
    },
  };

  it('shows each kind exactly, the total, the cost and the budget used', () => {
    const text = sessionUsageText(u);
    expect(text).toContain('input           1,234,567\n');
    expect(text).toContain('cache creation  10\n');
    expect(text).toContain('total tokens    1,323,577\n');
    expect(text).toContain('cost            $3.20 (estimate');
    expect(text).toContain('budget          2,000,000 tokens, 66.1% used\n');
  });

  it('has a row per model, sorted by name', () => {
    const lines = sessionUsageText(u).trimEnd().split('\n');
    const head = lines.findIndex((l) => l.startsWith('MODEL'));
    expect(rows(lines.slice(head).join('\n'))).toEqual([
      ['MODEL', 'REQUESTS', 'INPUT', 'OUTPUT', 'CACHE READ', 'CACHE WRITE', 'TOKENS', 'COST'],
      ['claude-haiku-4', '1', '34.6k', '9.0k', '0', '10', '43.6k', '$0.2000'],
      ['claude-sonnet-4', '3', '1.2M', '80.0k', '0', '0', '1.3M', '$3.00'],
    ]);
  });

  it('says none without a budget, and exhausted once it is used up', () => {
    expect(sessionUsageText({ ...u, budgetTokens: null })).toContain('budget          none\n');
    expect(sessionUsageText({ ...u, budgetTokens: 1_000_000 })).toContain('132.3% used (exhausted)');
  });
});

describe('requestsTable', () => {
  const r: BridgeRequestRecord = {
    ts: '2025-05-01T10:11:12.345Z',
    session: 'aaaaaaaaaaaa',
    method: 'POST',
    path: '/v1/messages',
    model: 'claude-sonnet-4',
    status: 200,
    error: null,
    inputTokens: 1200,
    outputTokens: 350,
    cacheReadTokens: 40_000,
    cacheCreationTokens: 0,
    durationMs: 8421,
    queuedMs: 0,
  };

  it('has a line per request with its tokens, times and error', () => {
    const refused = { ...r, ts: '2025-05-01T10:12:00.000Z', status: 403, error: 'BUDGET_EXCEEDED', model: null, inputTokens: 0, outputTokens: 0, cacheReadTokens: 0, durationMs: 3, queuedMs: 1500 };
    expect(rows(requestsTable([r, refused]))).toEqual([
      ['TIME', 'REQUEST', 'MODEL', 'STATUS', 'IN', 'OUT', 'CACHE R', 'CACHE W', 'DURATION', 'QUEUED', 'ERROR'],
      ['2025-05-01T10:11:12Z', 'POST /v1/messages', 'claude-sonnet-4', '200', '1.2k', '350', '40.0k', '0', '8.4s', '0ms'],
      ['2025-05-01T10:12:00Z', 'POST /v1/messages', '-', '403', '0', '0', '0', '0', '3ms', '1.5s', 'BUDGET_EXCEEDED'],
    ]);
  });

  it('escapes a model name from the request', () => {
    const t = requestsTable([{ ...r, model: `m${ESC}[2K\rx` }]);
    expect(t).not.toContain(ESC);
    expect(t).not.toContain('\r');
  });

  it('writes durations for people', () => {
    expect(millis(0)).toBe('0ms');
    expect(millis(999)).toBe('999ms');
    expect(millis(1500)).toBe('1.5s');
    expect(millis(125_000)).toBe('2m05s');
  });
});

describe('berth CLI flags (refused before any call)', () => {
  const argv = (...a: string[]) => ['node', 'berth', '--json', '--socket', '/nonexistent/berth.sock', ...a];
  async function code(...a: string[]): Promise<string> {
    let err = '';
    await run(argv(...a), { stdout: () => {}, stderr: (s) => (err += s) });
    return (JSON.parse(err) as { error: { code: string } }).error.code;
  }

  it('checks --budget-tokens on agent add and start', async () => {
    expect(await code('agent', 'add', 'fixer', '--budget-tokens', '0', '--', 'claude')).toBe('INVALID_PARAMS');
    expect(await code('agent', 'add', 'fixer', '--budget-tokens', 'none', '--', 'claude')).toBe('INVALID_PARAMS');
    expect(await code('start', 'web', '-a', 'fixer', '--budget-tokens', '12k')).toBe('INVALID_PARAMS');
    // Valid values get as far as the (missing) daemon.
    expect(await code('agent', 'add', 'fixer', '--budget-tokens', '200000', '--', 'claude')).toBe('DAEMON_UNREACHABLE');
    expect(await code('start', 'web', '-a', 'fixer', '--budget-tokens', 'none')).toBe('DAEMON_UNREACHABLE');
  });

  it('wants an ID with --requests', async () => {
    expect(await code('usage', '--requests')).toBe('INVALID_PARAMS');
    expect(await code('usage', 'abcd', '--limit', '5')).toBe('INVALID_PARAMS');
    expect(await code('usage', 'abcd', '--requests', '--limit', 'x')).toBe('INVALID_PARAMS');
    expect(await code('usage', 'abcd', '--requests', '--limit', '5')).toBe('DAEMON_UNREACHABLE');
  });
});
