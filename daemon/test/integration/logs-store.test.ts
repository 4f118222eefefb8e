import { execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { appendFile, mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import { BerthError, type LogLine, type Session } from '@berth/client-sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BERTH_BIN, finished, poll, sh, startWithProject, type DaemonProcess } from '../helpers/daemon.js';

const exec = promisify(execFile);
const codeOf = (p: Promise<unknown>) => p.then(() => 'ok', (e: unknown) => (e instanceof BerthError ? e.code : String(e)));

/**
 * berth's log store read through the daemon and the CLI, with segment files the test writes into
 * $BERTH_HOME/logs/<id>/ itself, in the format the writer keeps (see README "Logs"), so that every
 * shape the reader meets (.gz and .jsonl, both, a torn tail) is there. The ingest (logs-ingest.test.ts)
 * keeps writing a live session's directory, so the synthetic files go where it no longer writes:
 * a removed session's, or a live one whose agent prints nothing.
 */
const BASE = Date.UTC(2026, 11, 2, 8, 0, 0);
/** Line i: one a millisecond from BASE, in the engine's form (fraction digits trimmed: .1, .12, none). */
function rec(i: number, prefix = 'line'): LogLine {
  const iso = new Date(BASE + i).toISOString();
  const frac = iso.slice(20, 23).replace(/0+$/, '');
  return { ts: `${iso.slice(0, 19)}${frac ? `.${frac}` : ''}Z`, stream: i % 7 === 0 ? 'stderr' : 'stdout', line: `${prefix} ${i}` };
}
const body = (from: number, to: number, prefix = 'line') => {
  const parts: string[] = [];
  for (let i = from; i < to; i++) parts.push(`${JSON.stringify(rec(i, prefix))}\n`);
  return parts.join('');
};

async function writeSegment(dir: string, n: number, text: string, kind: 'plain' | 'gz' | 'both'): Promise<void> {
  await mkdir(dir, { recursive: true });
  const name = join(dir, `seg-${String(n).padStart(6, '0')}.jsonl`);
  if (kind !== 'plain') await writeFile(`${name}.gz`, gzipSync(text));
  if (kind !== 'gz') await writeFile(name, text);
}

describe('berth logs from the log store', () => {
  let d: DaemonProcess;
  const berth = async (...args: string[]) => {
    try {
      const r = await exec(process.execPath, [BERTH_BIN, '--socket', d.socket, ...args], { maxBuffer: 256 * 1024 * 1024 });
      return { code: 0, stdout: r.stdout, stderr: r.stderr };
    } catch (err) {
      const e = err as { code: number; stdout: string; stderr: string };
      return { code: e.code, stdout: e.stdout, stderr: e.stderr };
    }
  };
  const quick = async (name?: string): Promise<Session> => {
    const s = await d.client.sessions.start({ project: 'web', agent: 'quick', ...(name ? { name } : {}) });
    await finished(d.client, s.id, 60_000);
    return s;
  };
  const store = (id: string) => join(d.home, 'logs', id);
  /** Removes the session and, once the ingest has let go of its directory, what it stored there. */
  const removeAndClear = async (s: Session): Promise<string> => {
    await d.client.sessions.remove({ id: s.id });
    const dir = store(s.id);
    await poll(async () => existsSync(join(dir, 'removed.json')), 60_000, 'the ingest to let go of the removed session');
    for (const f of await readdir(dir)) if (f.startsWith('seg-')) await rm(join(dir, f));
    return dir;
  };

  beforeAll(async () => {
    ({ d } = await startWithProject());
    await d.client.agents.define({ name: 'quick', command: sh('echo from the engine; exit 0'), restartPolicy: 'never' });
    await d.client.agents.define({ name: 'silent', command: sh('sleep 600'), restartPolicy: 'never' });
  });
  afterAll(async () => {
    await d?.[Symbol.asyncDispose]();
  });

  it('prints every one of 1,000,000 lines in order, across .gz and .jsonl segments; -n, --grep, --since/--until narrow it', async () => {
    const s = await quick();
    const dir = await removeAndClear(s);
    const N = 1_000_000;
    await writeSegment(dir, 1, body(0, 300_000), 'gz');
    await writeSegment(dir, 2, body(300_000, 600_000), 'gz');
    await writeSegment(dir, 3, body(600_000, 900_000), 'both');
    // The segment being written, with a torn last line (berthd killed mid-write).
    await writeSegment(dir, 4, `${body(900_000, N)}{"ts":"2026-12-02T08:1`, 'plain');

    const all = await berth('logs', s.id);
    expect(all.code, all.stderr).toBe(0);
    // stderr lines go to stderr, as docker logs prints them.
    const want: string[] = [];
    const wantErr: string[] = [];
    for (let i = 0; i < N; i++) (i % 7 === 0 ? wantErr : want).push(`line ${i}\n`);
    // Compared as text: a diff of a million lines would cost more than the read.
    expect(all.stdout.length).toBe(want.join('').length);
    expect(all.stdout === want.join(''), 'stdout is every stdout line, in order').toBe(true);
    expect(all.stderr === wantErr.join(''), 'stderr is every stderr line, in order').toBe(true);

    const last = await berth('logs', '-n', '4', s.id);
    expect([last.stdout, last.stderr]).toEqual(['line 999996\nline 999997\nline 999998\n', 'line 999999\n']);
    expect((await berth('logs', '--grep', '^line 12345[0-9]$', s.id)).stdout.split('\n').filter(Boolean)).toEqual(
      Array.from({ length: 10 }, (_, k) => `line ${123450 + k}`).filter((l) => Number(l.slice(5)) % 7 !== 0),
    );
    const since = rec(500_000).ts;
    const until = rec(500_004).ts;
    expect((await berth('logs', '--since', since, '--until', until, '-t', s.id)).stdout).toBe(
      [500_000, 500_001, 500_002, 500_004].map((i) => `${rec(i).ts} line ${i}\n`).join(''),
    );
    const bad = await berth('--json', 'logs', '--grep', '(', s.id);
    expect(bad.code).not.toBe(0);
    expect(JSON.parse(bad.stderr).error.code).toBe('LOG_FILTER_INVALID');

    // The method answers an array, bounded: more is refused, not cut.
    expect(await codeOf(d.client.sessions.logs({ id: s.id }))).toBe('LOGS_TOO_MANY_LINES');
    expect((await d.client.sessions.logs({ id: s.id, tail: 2 })).map((l) => l.line)).toEqual(['line 999998', 'line 999999']);
    expect((await d.client.sessions.logs({ id: s.id, grep: '^line 4242\\d$', since: rec(42_425).ts })).map((l) => l.line)).toEqual(
      ['line 42425', 'line 42426', 'line 42427', 'line 42428', 'line 42429'],
    );

    // A reader that goes away (| head) ends berth cleanly: no EPIPE trace, exit 0.
    const head = await exec('bash', ['-c', `set -o pipefail; "${process.execPath}" "${BERTH_BIN}" --socket "${d.socket}" logs ${s.id} | head -n 2`]);
    expect(head.stdout).toBe('line 1\nline 2\n');
    // Only log lines of the stderr stream there (line 0, line 7 ...), no error.
    expect(head.stderr.split('\n').filter((l) => l && !/^line \d+$/.test(l))).toEqual([]);
  }, 600_000);

  it('follows appended lines and the next segment, and ends when the session is removed', async () => {
    const s = await d.client.sessions.start({ project: 'web', agent: 'silent' });
    const dir = store(s.id);
    // The ingest has opened the (empty) store: it writes nothing while the agent prints nothing.
    await poll(async () => (await d.client.sessions.get({ id: s.id })).state === 'running' && existsSync(dir), 60_000, 'the agent to run');
    await d.client.sessions.logs({ id: s.id });
    await writeSegment(dir, 1, body(0, 3, 'old'), 'plain');
    const child = spawn(process.execPath, [BERTH_BIN, '--socket', d.socket, 'logs', '-f', '-n', '1', s.id]);
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (t: string) => (out += t));
    const exited = new Promise<number | null>((r) => child.once('exit', r));
    try {
      await poll(async () => out === 'old 2\n', 60_000, 'the tail');
      await appendFile(join(dir, 'seg-000001.jsonl'), body(3, 5, 'old'));
      await poll(async () => out.endsWith('old 4\n'), 60_000, 'appended lines');
      // The container restarted: the writer goes on in the next segment with a marker.
      await writeSegment(dir, 2, `${JSON.stringify({ ts: rec(6).ts, stream: 'berth', line: 'berth: container restarted', event: 'restart' })}\n${body(8, 10, 'new')}`, 'plain');
      await poll(async () => out.endsWith('new 9\n'), 60_000, 'the next segment');
      expect(out).toBe('old 2\nold 3\nold 4\nberth: container restarted\nnew 8\nnew 9\n');
      await writeFile(join(dir, 'removed.json'), JSON.stringify({ removedAt: new Date().toISOString(), id: s.id, name: s.name, project: 'web' }));
      expect(await exited).toBe(0);
    } finally {
      child.kill();
    }
  });

  it('keeps a removed session: ps --removed lists it, logs reads it by id and by name, its name is free again', async () => {
    const name = `gone-${process.pid}`;
    const s = await quick(name);
    await poll(async () => (await codeOf(d.client.sessions.logs({ id: s.id }))) === 'ok', 60_000, 'the logs');
    const dir = await removeAndClear(s);
    await poll(async () => (await codeOf(d.client.sessions.get({ id: s.id }))) === 'SESSION_NOT_FOUND', 60_000, 'the removal');
    await writeSegment(dir, 1, body(0, 4, 'kept'), 'gz');

    const listed = await berth('--json', 'ps', '-a', '--removed');
    expect(listed.code, listed.stderr).toBe(0);
    const gone = (JSON.parse(listed.stdout) as Session[]).find((x) => x.id === s.id);
    expect(gone).toMatchObject({ id: s.id, name, project: 'web', agent: 'quick', exitCode: 0 });
    expect(Date.parse(gone!.removedAt!)).toBeGreaterThan(Date.parse(s.createdAt) - 1000);
    expect((await berth('ps', '--removed')).stdout).toContain(name);
    expect((await d.client.sessions.list({ active: true })).items.some((x) => x.id === s.id)).toBe(false);

    expect((await berth('logs', s.id)).stdout).toBe('kept 1\nkept 2\nkept 3\n');
    expect((await berth('logs', s.id.slice(0, 8))).stdout).toBe('kept 1\nkept 2\nkept 3\n');
    expect((await berth('logs', '-n', '1', name)).stdout).toBe('kept 3\n');

    // A new session may take the name; the name then means it, the old one stays readable by id.
    const again = await quick(name);
    expect(again.id).not.toBe(s.id);
    expect((await berth('logs', name)).stdout).toBe('from the engine\n');
    expect((await berth('logs', s.id)).stdout).toBe('kept 1\nkept 2\nkept 3\n');
    expect(await codeOf(d.client.sessions.logs({ id: 'ffffffffffff' }))).toBe('SESSION_NOT_FOUND');
  });
});
