import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { listSegments, readAllStored, readSegment, type StoredLine } from '../../src/logs/format.js';
import { poll, sh, startDaemon, startWithProject, type DaemonProcess } from '../helpers/daemon.js';
import { TEST_IMAGE } from '../helpers/docker.js';

/** The last line the engine holds for the session's container, read with the docker CLI (berthd may be down). */
function engineLastLine(sessionId: string): string | null {
  const ids = execFileSync('docker', ['ps', '-aq', '--filter', `label=dev.berth.session=${sessionId}`], { encoding: 'utf8' }).trim().split('\n').filter(Boolean);
  if (ids.length !== 1) return null;
  return execFileSync('docker', ['logs', '--tail', '1', ids[0]!], { encoding: 'utf8' }).trim();
}

/** Stored output of a session, read straight from its segment files (the reader is another module). */
const sessionDir = (d: DaemonProcess, id: string) => join(d.home, 'logs', id);

/** Whether the newest segment (or the one before, when it was just rotated) holds a line equal to `last`. */
async function stored(dir: string, last: string): Promise<boolean> {
  const segs = await listSegments(dir);
  for (const e of segs.slice(-2)) {
    const text = await readSegment(dir, e).catch(() => '');
    if (text.includes(`"line":${JSON.stringify(last)}}`)) return true;
  }
  return false;
}

/** Every engine line is the next number: 1..n each exactly once, in order. */
function expectSequence(lines: StoredLine[], from: number, to: number): void {
  const numbers = lines.filter((l) => l.stream !== 'berth').map((l) => l.line);
  expect(numbers.length, 'number of stored lines').toBe(to - from + 1);
  for (let i = 0; i < numbers.length; i++) {
    if (numbers[i] !== String(from + i)) expect(`line ${i}: ${numbers[i]}`).toBe(`line ${i}: ${from + i}`);
  }
}

async function dirBytes(dir: string): Promise<number> {
  let total = 0;
  for (const f of await readdir(dir)) total += (await stat(join(dir, f))).size;
  return total;
}

describe('log ingest: berthd copies every session\'s output into its own store', () => {
  it('stores all of 1,000,000 lines in order, in rotated and gzipped segments, and follows a container restart', async () => {
    const { d } = await startWithProject({ env: { BERTH_LOG_SEGMENT_BYTES: '4m' } });
    await using _d = d;
    const c = d.client;
    await c.agents.define({ name: 'flood', command: sh('seq 1 1000000') });
    const s = await c.sessions.start({ project: 'web', agent: 'flood', name: 'flood' });
    const dir = sessionDir(d, s.id);
    await poll(() => stored(dir, '1000000'), 180_000, 'the millionth line stored');
    const lines = await readAllStored(dir);
    expectSequence(lines, 1, 1_000_000);
    expect(lines.filter((l) => l.stream === 'berth')).toEqual([]);
    for (const l of lines) expect(l.stream === 'stdout' && /^\d{4}-\d\d-\d\dT.*Z$/.test(l.ts)).toBe(true);
    const files = await readdir(dir);
    expect(files.filter((f) => f.endsWith('.jsonl.gz')).length).toBeGreaterThan(1);
    await poll(async () => (await readdir(dir)).filter((f) => f.endsWith('.jsonl')).length === 1, 60_000, 'closed segments compressed');

    // A container that crashes and is restarted (restartPolicy on-failure): the same container
    // starts again; its second run's lines follow the first's, once each, after a restart marker.
    await c.agents.define({
      name: 'crasher',
      command: sh('if [ -e "$HOME/second" ]; then seq 50001 100000; else touch "$HOME/second"; seq 1 50000; exit 3; fi'),
      restartPolicy: 'on-failure',
    });
    const r = await c.sessions.start({ project: 'web', agent: 'crasher', name: 'crasher' });
    const rdir = sessionDir(d, r.id);
    await poll(() => stored(rdir, '100000'), 120_000, 'the restarted container\'s last line stored');
    const rl = await readAllStored(rdir);
    expectSequence(rl, 1, 100_000);
    const marker = rl.findIndex((l) => l.stream === 'berth' && l.event === 'restart');
    expect(marker, 'a restart marker').toBeGreaterThan(0);
    expect(rl[marker - 1]!.line).toBe('50000');
    expect(rl[marker + 1]!.line).toBe('50001');
  }, 400_000);

  it('loses and doubles nothing when berthd is killed (-9) in the middle of a flood', async () => {
    const env = { BERTH_LOG_SEGMENT_BYTES: '1m' };
    const first = await startWithProject({ env });
    let d: DaemonProcess = first.d;
    const daemons = [d];
    try {
      // 200,000 lines (15 MB of json-file): the engine's own log holds them all while berthd is down.
      await d.client.agents.define({ name: 'flood', command: sh('seq 1 200000') });
      const s = await d.client.sessions.start({ project: 'web', agent: 'flood', name: 'flood' });
      const dir = sessionDir(d, s.id);
      // Some of it stored, not all of it.
      await poll(async () => (await dirBytes(dir).catch(() => 0)) > 200_000, 120_000, 'part of the flood stored');
      await d.stop('SIGKILL');
      const before = await readAllStored(dir);
      d = await startDaemon({ home: first.d.home, env });
      daemons.push(d);
      await poll(() => stored(dir, '200000'), 120_000, 'the last line stored after the restart');
      expect(before.length).toBeLessThan(200_000);
      const after = await readAllStored(dir);
      expectSequence(after, 1, 200_000);
      expect(after.filter((l) => l.stream === 'berth'), 'no marker: nothing was lost').toEqual([]);

      // And again with nothing new: a restart adds nothing.
      await d.stop('SIGKILL');
      d = await startDaemon({ home: first.d.home, env });
      daemons.push(d);
      await poll(async () => (await d.client.sessions.get({ id: s.id })).state === 'exited', 60_000, 'the session adopted');
      expectSequence(await readAllStored(dir), 1, 200_000);
    } finally {
      for (const x of daemons.slice(0, -1)) if (x.exitCode === null) await x.stop('SIGKILL');
      await daemons.at(-1)![Symbol.asyncDispose]();
      await first.d[Symbol.asyncDispose]();
    }
  }, 400_000);

  it('says so when the engine rotated output out while berthd was down: a lost marker, then every line the engine still had', async () => {
    // The engine keeps 4 MiB of json-file (2 files of 2 MiB) for each container.
    const env = { BERTH_LOG_SEGMENT_BYTES: '4m', BERTH_LOG_ENGINE_BYTES: '4m' };
    const first = await startWithProject({ env });
    let d: DaemonProcess = first.d;
    const daemons = [d];
    try {
      // 1,000 lines, then (once the gate opens, berthd being down) 199,000 more: ~14 MB of json-file,
      // more than the engine keeps, so its oldest files are rotated out before berthd is back.
      await d.client.agents.define({
        name: 'burst',
        image: TEST_IMAGE,
        readOnly: true,
        restartPolicy: 'never',
        command: sh('seq 1 1000; until [ -e /workspace/gate-$BERTH_SESSION ]; do sleep 0.1; done; seq 1001 200000'),
      });
      const s = await d.client.sessions.start({ project: 'web', agent: 'burst', name: 'burst' });
      const dir = sessionDir(d, s.id);
      await poll(() => stored(dir, '1000'), 120_000, 'the first 1,000 lines stored');
      await d.stop('SIGKILL');
      writeFileSync(join(first.repo, `gate-${s.id}`), '');
      await poll(() => engineLastLine(s.id) === '200000', 180_000, 'the agent done printing while berthd is down');
      d = await startDaemon({ home: first.d.home, env });
      daemons.push(d);
      await poll(() => stored(dir, '200000'), 180_000, 'the last line stored after the restart');
      const lines = await readAllStored(dir);
      expectSequence(lines.slice(0, 1000), 1, 1000);
      const lost = lines[1000]!;
      expect(lost).toMatchObject({ stream: 'berth', event: 'lost', dropped: null });
      const rest = lines.slice(1001);
      const from = Number(rest[0]!.line);
      expect(from).toBeGreaterThan(1001);
      expectSequence(rest, from, 200_000);
    } finally {
      for (const x of daemons.slice(0, -1)) if (x.exitCode === null) await x.stop('SIGKILL');
      await daemons.at(-1)![Symbol.asyncDispose]();
      await first.d[Symbol.asyncDispose]();
    }
  }, 600_000);

  it('keeps a session to logRetentionBytes, dropping the oldest segments, and marks a removed session', async () => {
    const { d } = await startWithProject({ env: { BERTH_LOG_SEGMENT_BYTES: '64k', BERTH_LOG_RETENTION_BYTES: '256k' } });
    await using _d = d;
    const c = d.client;
    await c.agents.define({ name: 'flood', command: sh('seq 1 200000') });
    const s = await c.sessions.start({ project: 'web', agent: 'flood', name: 'flood' });
    const dir = sessionDir(d, s.id);
    await poll(() => stored(dir, '200000'), 180_000, 'the last line stored');
    // Retention runs after each compression: wait for the last ones.
    await poll(async () => (await dirBytes(dir)) <= 256 * 1024 + 64 * 1024 + 64 * 1024, 60_000, 'the session cut to its retention');
    const lines = await readAllStored(dir);
    const first = Number(lines[0]!.line);
    expect(first).toBeGreaterThan(1);
    expectSequence(lines, first, 200_000);
    expect((await listSegments(dir))[0]!.n).toBeGreaterThan(1);

    await c.sessions.remove({ id: s.id, force: true });
    await poll(async () => (await readdir(dir)).includes('removed.json'), 60_000, 'removed.json');
    const removed = JSON.parse(await readFile(join(dir, 'removed.json'), 'utf8')) as Record<string, string>;
    expect(removed).toMatchObject({ id: s.id, name: 'flood', project: 'web' });
    expect(Number.isFinite(Date.parse(removed.removedAt!))).toBe(true);
    expect((await listSegments(dir)).length).toBeGreaterThan(0);
  }, 400_000);
});
