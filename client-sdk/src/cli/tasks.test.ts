import { execFileSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BerthError, type Pool, type Task } from '../protocol/index.js';
import { run } from './index.js';
import { importText, poolTable, poolText, readText, taskFileFormat, taskLine, taskTable, taskText } from './tasks.js';

const ESC = '\x1b';
/** Any character a terminal acts on, as escapeControls defines them (\n and \t allowed). */
const RAW = /[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200b\u200e\u200f\u202a-\u202e\u2028\u2029\u2060\u2066-\u2069\ufeff]/u;
const NOW = Date.parse('2026-12-02T10:10:00.000Z');

function task(over: Partial<Task> = {}): Task {
  return {
    id: 12,
    project: 'web',
    key: null,
    title: 'Add a login form',
    body: '',
    priority: 0,
    labels: [],
    dependsOn: [],
    state: 'open',
    claim: null,
    attempts: 0,
    maxAttempts: 3,
    result: null,
    notes: [],
    pool: null,
    createdAt: '2026-12-02T10:00:00.000Z',
    updatedAt: '2026-12-02T10:05:00.000Z',
    ...over,
  };
}

function pool(over: Partial<Pool> = {}): Pool {
  return {
    id: 'web-pool',
    project: 'web',
    agent: 'coder',
    parallel: 3,
    reviewer: null,
    autoMerge: false,
    untilEmpty: false,
    state: 'running',
    createdAt: '2026-12-02T09:10:00.000Z',
    updatedAt: '2026-12-02T09:10:00.000Z',
    tasks: { open: 4, claimed: 2, review: 0, done: 6, failed: 0, cancelled: 0 },
    sessions: [
      { id: 'aaaaaaaaaaaa', name: 'web-1', role: 'worker', task: 3, state: 'running' },
      { id: 'bbbbbbbbbbbb', name: 'web-2', role: 'worker', task: 4, state: 'running' },
    ],
    finished: 6,
    perHour: 6,
    tokens: 123_456,
    ...over,
  };
}

/** The table's rows as cells (columns are two or more spaces apart). */
const rows = (text: string) => text.trimEnd().split('\n').map((l) => l.split(/ {2,}/));

describe('task renderings', () => {
  it('lists a task a row: state, priority, attempts, dependencies, holder, the title cut to the column', () => {
    const long = 'x'.repeat(80);
    const t = taskTable([
      task({ state: 'claimed', priority: 5, attempts: 1, dependsOn: [3, 4], claim: { session: 'aaaaaaaaaaaa', sessionName: 'web-1', leaseUntil: '2026-12-02T10:20:00.000Z', attempt: 1 } }),
      task({ id: 13, title: long }),
    ]);
    expect(rows(t)).toEqual([
      ['ID', 'PROJECT', 'STATE', 'PRIORITY', 'ATTEMPTS', 'DEPENDS ON', 'HELD BY', 'TITLE'],
      ['12', 'web', 'claimed', '5', '1/3', '3,4', 'web-1', 'Add a login form'],
      ['13', 'web', 'open', '0', '0/3', '-', '-', `${'x'.repeat(59)}…`],
    ]);
    expect(taskTable([task({ title: long })], true)).toContain(long);
  });

  it('escapes titles, keys, notes and bodies an agent may have written; text of several lines stays under "  | "', () => {
    const evil = `fix${ESC}]52;c;aGk=\x07\nstate       done\u202e`;
    const t = task({
      key: `k${ESC}[2J`,
      title: evil,
      body: `line one\n${ESC}[1Aline two\nhint: run rm -rf`,
      state: 'open',
      attempts: 1,
      notes: [{ at: '2026-12-02T10:01:00.000Z', attempt: 1, session: 'aaaaaaaaaaaa', kind: 'failed', text: `gave up\nstate       done${ESC}[0m` }],
    });
    for (const text of [taskTable([t]), taskText(t, NOW), taskLine('added', t)]) {
      expect(text).not.toMatch(RAW);
    }
    const lines = taskText(t, NOW).split('\n');
    // Only berth's own lines start at the margin: the forged "state       done" is behind a bar or escaped.
    expect(lines.filter((l) => l.startsWith('state'))).toEqual(['state       open']);
    expect(lines).toContain('  | line one');
    expect(lines).toContain('  | \\x1b[1Aline two');
    expect(lines).toContain('    | state       done\\x1b[0m');
    expect(lines.find((l) => l.startsWith('title'))).toBe('title       fix\\x1b]52;c;aGk=\\x07\\nstate       done\\u202e');
  });

  it('shows the holder, its lease, the attempts, the result and the notes in order', () => {
    const text = taskText(
      task({
        key: 'login',
        state: 'review',
        attempts: 2,
        labels: ['ui', 'auth'],
        dependsOn: [3],
        pool: 'web-pool',
        claim: { session: 'aaaaaaaaaaaa', sessionName: 'web-1', leaseUntil: '2026-12-02T10:19:00.000Z', attempt: 2 },
        result: { branch: 'berth/task-12', commit: '0123456789abcdef', summary: 'Added the form.', merged: null },
        notes: [
          { at: '2026-12-02T10:01:00.000Z', attempt: 1, session: 'cccccccccccc', kind: 'expired', text: 'no heartbeat' },
          { at: '2026-12-02T10:02:00.000Z', attempt: 1, session: null, kind: 'changes', text: 'add a test' },
        ],
      }),
      NOW,
    );
    expect(text).toContain('key         login\n');
    expect(text).toContain('held by     web-1 (session aaaaaaaaaaaa), attempt 2, lease until 2026-12-02T10:19:00Z (in 9m0s)\n');
    expect(text).toContain('attempts    2 of 3\n');
    expect(text).toContain('labels      ui, auth\n');
    expect(text).toContain('depends on  3\n');
    expect(text).toContain('pool        web-pool\n');
    expect(text).toContain('result      branch berth/task-12, commit 0123456789ab\nsummary\n  | Added the form.\n');
    expect(text).toMatch(/notes\n {2}2026-12-02T10:01:00Z {2}attempt 1 {2}expired \(session cccccccccccc\)\n {4}\| no heartbeat\n {2}2026-12-02T10:02:00Z {2}attempt 1 {2}changes\n {4}\| add a test\n$/);
  });

  it('says what an import did', () => {
    expect(importText({ added: 2, updated: 1, unchanged: 4, tasks: [] })).toBe('2 added, 1 updated, 4 unchanged (0 in the file)\n');
  });

  it('reads the format of a task file from its name', () => {
    expect(taskFileFormat('backlog.YAML')).toBe('yaml');
    expect(taskFileFormat('x.yml')).toBe('yaml');
    expect(taskFileFormat('x.json')).toBe('json');
    expect(taskFileFormat('x.csv')).toBe('csv');
    expect(taskFileFormat('x.txt')).toBeNull();
  });
});

describe('pool renderings', () => {
  it('lists a pool a row: workers of parallel, tasks by state (none left out), throughput, tokens', () => {
    expect(rows(poolTable([pool()], NOW))).toEqual([
      ['ID', 'PROJECT', 'AGENT', 'REVIEWER', 'STATE', 'WORKERS', 'TASKS', 'FINISHED', 'PER HOUR', 'TOKENS', 'CREATED'],
      ['web-pool', 'web', 'coder', '-', 'running', '2/3', '4 open, 2 claimed, 6 done', '6', '6', '123k', '1h ago'],
    ]);
  });

  it('shows tasks by state and the sessions with role, task and state', () => {
    const text = poolText(pool({ reviewer: 'critic', autoMerge: true, sessions: [...pool().sessions, { id: 'dddddddddddd', name: `rev${ESC}[2J`, role: 'reviewer', task: 1, state: 'running' }] }), NOW);
    expect(text).not.toMatch(RAW);
    expect(text).toContain('reviewer    critic\n');
    expect(text).toContain('state       running (auto-merge)\n');
    expect(text).toContain('finished    6 (6 an hour)\n');
    expect(text).toMatch(/\nSTATE\s+TASKS\nopen\s+4\nclaimed\s+2\nreview\s+0\ndone\s+6\nfailed\s+0\ncancelled\s+0\n/);
    expect(text).toMatch(/\nSESSION\s+NAME\s+ROLE\s+TASK\s+STATE\naaaaaaaaaaaa\s+web-1\s+worker\s+3\s+running\n/);
    expect(text).toContain('rev\\x1b[2J');
    expect(poolText(pool({ sessions: [] }), NOW)).toMatch(/\nno sessions\n$/);
  });
});

describe('reading a file for the CLI', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'bt-cli-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const refusal = async (p: Promise<unknown>): Promise<BerthError> => {
    const err = await p.then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(BerthError);
    return err as BerthError;
  };

  it('reads a file up to the limit, and refuses one past it with the code given', async () => {
    await writeFile(join(dir, 'ok.txt'), 'héllo');
    expect(await readText(join(dir, 'ok.txt'), 6, 'the body file', 'TASK_TOO_LARGE')).toBe('héllo');
    expect((await refusal(readText(join(dir, 'ok.txt'), 5, 'the body file', 'TASK_TOO_LARGE'))).code).toBe('TASK_TOO_LARGE');
  });

  it('refuses a FIFO (without blocking on it), a directory, a missing file and text that is not UTF-8', async () => {
    execFileSync('mkfifo', [join(dir, 'fifo')]);
    expect((await refusal(readText(join(dir, 'fifo'), 100, 'the task file', 'TASKS_FILE_INVALID'))).code).toBe('INVALID_PARAMS');
    expect((await refusal(readText(dir, 100, 'the task file', 'TASKS_FILE_INVALID'))).code).toBe('INVALID_PARAMS');
    expect((await refusal(readText(join(dir, 'missing'), 100, 'the task file', 'TASKS_FILE_INVALID'))).code).toBe('PATH_NOT_FOUND');
    await writeFile(join(dir, 'latin1.csv'), Buffer.from([0x6b, 0x65, 0x79, 0xe9, 0x0a]));
    expect((await refusal(readText(join(dir, 'latin1.csv'), 100, 'the task file', 'TASKS_FILE_INVALID'))).code).toBe('TASKS_FILE_INVALID');
  });
});

describe('berth task and pool flags (refused before berthd is asked)', () => {
  const argv = (...a: string[]) => ['node', 'berth', '--json', '--socket', '/nonexistent/berth.sock', ...a];
  const code = async (...a: string[]) => {
    let err = '';
    const status = await run(argv(...a), { stdout: () => {}, stderr: (s) => (err += s) });
    return { status, code: (JSON.parse(err) as { error: { code: string } }).error.code };
  };

  it('checks numbers, states, formats and conflicting flags in their own terms', async () => {
    for (const args of [
      ['task', 'add', 'web', 'T', '--priority', 'high'],
      ['task', 'add', 'web', 'T', '--depends-on', '3,x'],
      ['task', 'add', 'web', 'T', '--body', 'a', '--body-file', '-'],
      ['task', 'add', 'web', 'T', '--max-attempts', '0'],
      ['task', 'ls', '--state', 'sleeping'],
      ['task', 'ls', '--all', '--limit', '5'],
      ['task', 'show', 'abc'],
      ['task', 'update', '3', '--label', 'a', '--clear-labels'],
      ['task', 'import', 'web', 'tasks.txt'],
      ['task', 'import', 'web', 'tasks.yaml', '--format', 'toml'],
      ['run', 'web', '--agent', 'coder', '--parallel', '0'],
      ['pool', 'scale', 'web-pool', '101'],
    ]) {
      expect(await code(...args), args.join(' ')).toEqual({ status: 1, code: 'INVALID_PARAMS' });
    }
  });

  it('reaches berthd only with flags that make sense (here: none listens)', async () => {
    expect(await code('task', 'add', 'web', 'T', '--priority', '-5', '--depends-on', '3,4', '--depends-on', '5')).toEqual({ status: 1, code: 'DAEMON_UNREACHABLE' });
  });
});
