import { execFile } from 'node:child_process';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BerthClient } from '@berth/client-sdk';
import type { Schedule } from '@berth/client-sdk/protocol';
import { loadConfig } from '../../src/config/index.js';
import { startDaemon, type Daemon } from '../../src/main.js';
import { DockerRuntime } from '../../src/runtime/docker/engine.js';
import { FakeClock } from '../helpers/clock.js';
import { BERTH_BIN, makeRepo, poll, removeInstanceObjects, sh, tempDir } from '../helpers/daemon.js';
import { TEST_IMAGE } from '../helpers/docker.js';

const exec = promisify(execFile);
const HOUR = 3_600_000;
const MIN = 60_000;

/**
 * Schedules on the real engine, with berthd's clock injected: the test moves time to the minute a
 * schedule names instead of waiting for it, and moves it across a berthd that is down.
 */
describe('schedules (real engine, injected clock)', () => {
  let home: string;
  let socket: string;
  let clock: FakeClock;
  let daemon: Daemon | null = null;
  let client: BerthClient;
  /** Whole hours of fake time: every schedule here runs at minute 0 ("0 * * * *"). */
  let hour: number;

  const config = () => loadConfig({ env: { HOME: home, BERTH_HOME: home, BERTH_SOCKET: socket, PROJECTS_ROOT: join(home, 'projects'), AGENT_DEFAULT_IMAGE: TEST_IMAGE } });

  async function up(): Promise<void> {
    daemon = await startDaemon(config(), pino({ level: 'silent' }), { clock, runtime: new DockerRuntime({ dockerHost: null }) });
    client = new BerthClient({ socketPath: socket, timeoutMs: 120_000 });
  }

  async function down(): Promise<void> {
    client?.close();
    await daemon?.stop('test');
    daemon = null;
  }

  /**
   * Waits for `pred` on the schedule, moving fake time on a second per 100 ms meanwhile (berthd's
   * own retries run on this clock too), never up to the next whole hour: no other run comes due.
   */
  async function ticking<T>(f: () => Promise<T | null | undefined | false>, what: string): Promise<T> {
    const ceiling = Math.floor(clock.now().getTime() / HOUR) * HOUR + HOUR - 5 * MIN;
    const timer = setInterval(() => {
      if (clock.now().getTime() + 1000 < ceiling) clock.advance(1000);
    }, 100);
    try {
      return await poll(f, 120_000, what);
    } finally {
      clearInterval(timer);
    }
  }

  function until(name: string, pred: (s: Schedule) => boolean, what: string): Promise<Schedule> {
    return ticking(async () => {
      const s = await client.schedules.get({ name });
      return pred(s) ? s : null;
    }, what);
  }

  const running = (name: string) => ticking(async () => (await client.sessions.get({ id: name })).state === 'running', `${name} to run`);

  /** Each test starts at minute 10 of the next whole hour, so one that failed leaves the next its own hours. */
  function nextHour(): void {
    hour = Math.floor(clock.now().getTime() / HOUR) * HOUR + HOUR;
    clock.set(hour + 10 * MIN);
  }

  /** Moves fake time to minute `m` of hour `h` (hours counted from the test's start). */
  const at = (h: number, m = 0) => clock.set(hour + h * HOUR + m * MIN);

  async function cleanup(name: string): Promise<void> {
    const s = await client.schedules.get({ name });
    await client.schedules.remove({ name });
    for (const r of s.history) if (r.session) await client.sessions.remove({ id: r.session.id, force: true, stop: true }).catch(() => {});
  }

  beforeAll(async () => {
    home = await tempDir('bsch-');
    socket = join(home, 'berth.sock');
    await makeRepo(join(home, 'projects', 'web'));
    // Ten minutes into an hour: the first run of "0 * * * *" is 50 minutes ahead.
    hour = Math.floor(Date.now() / HOUR) * HOUR;
    clock = new FakeClock(hour + 10 * MIN);
    await up();
    await client.projects.add({ name: 'web', path: join(home, 'projects', 'web') });
    // Read sessions: no checkout to make per run.
    await client.agents.define({ name: 'sleeper', command: sh('sleep 3600'), readOnly: true, restartPolicy: 'never' });
  }, 120_000);

  afterAll(async () => {
    await down();
    await removeInstanceObjects(home);
    await rm(home, { recursive: true, force: true });
  }, 120_000);

  it('fires at the due minute; forbid skips a run while the previous one runs', async () => {
    nextHour();
    const s0 = await client.schedules.add({ name: 'forbid', project: 'web', agent: 'sleeper', cron: '0 * * * *' });
    expect(s0.concurrency).toBe('forbid');
    expect(s0.nextRunAt).toBe(new Date(hour + HOUR).toISOString());
    at(1);
    const s1 = await until('forbid', (s) => s.history.length === 1 && s.active.length === 1, 'the first run');
    expect(s1.history[0]).toMatchObject({ outcome: 'started', scheduledAt: new Date(hour + HOUR).toISOString(), session: { name: 'forbid-1' }, final: null });
    await running('forbid-1');
    expect(s1.nextRunAt).toBe(new Date(hour + 2 * HOUR).toISOString());

    at(2);
    const s2 = await until('forbid', (s) => s.history.length === 2, 'the second time');
    expect(s2.history[0]).toMatchObject({ outcome: 'skipped', scheduledAt: new Date(hour + 2 * HOUR).toISOString(), session: null });
    expect(s2.active.map((a) => a.name)).toEqual(['forbid-1']);
    await cleanup('forbid');
  }, 240_000);

  it('allow runs two at once', async () => {
    nextHour();
    await client.schedules.add({ name: 'allow', project: 'web', agent: 'sleeper', cron: '0 * * * *', concurrency: 'allow' });
    at(1);
    await until('allow', (s) => s.active.length === 1, 'the first run');
    await running('allow-1');
    at(2);
    const s = await until('allow', (x) => x.active.length === 2, 'the second run');
    expect(s.history.map((r) => [r.outcome, r.session?.name])).toEqual([
      ['started', 'allow-2'],
      ['started', 'allow-1'],
    ]);
    await cleanup('allow');
  }, 240_000);

  it('replace stops the previous run, then starts the next', async () => {
    nextHour();
    await client.schedules.add({ name: 'replace', project: 'web', agent: 'sleeper', cron: '0 * * * *', concurrency: 'replace' });
    at(1);
    await until('replace', (s) => s.active.length === 1, 'the first run');
    await running('replace-1');
    at(2);
    const s = await until('replace', (x) => x.history.length === 2 && x.active.length === 1 && x.history[1]!.final !== null, 'the replacement');
    expect(s.active.map((a) => a.name)).toEqual(['replace-2']);
    expect(s.history[1]).toMatchObject({ outcome: 'replaced', session: { name: 'replace-1' }, final: { state: 'stopped' } });
    expect(s.history[0]).toMatchObject({ outcome: 'started', session: { name: 'replace-2' } });
    expect((await client.sessions.get({ id: 'replace-1' })).state).toBe('stopped');
    await cleanup('replace');
  }, 240_000);

  it('after downtime: a run within the starting deadline starts once, one past it is recorded missed', async () => {
    nextHour();
    await client.schedules.add({ name: 'downtime', project: 'web', agent: 'sleeper', cron: '0 * * * *', concurrency: 'allow', startingDeadlineSec: 600 });
    await down();
    // berthd is back five minutes after the run was due: within ten minutes, it starts.
    at(1, 5);
    await up();
    const s1 = await until('downtime', (s) => s.history.length === 1 && s.active.length === 1, 'the late run');
    expect(s1.history[0]).toMatchObject({ outcome: 'started', scheduledAt: new Date(hour + HOUR).toISOString(), session: { name: 'downtime-1' } });

    // Down again across two runs; back 30 minutes after the latest: past the deadline, none starts.
    await down();
    at(3, 30);
    await up();
    const s2 = await until('downtime', (s) => s.history.length === 2, 'the missed run');
    expect(s2.history[0]).toMatchObject({ outcome: 'missed', scheduledAt: new Date(hour + 3 * HOUR).toISOString(), session: null });
    expect(s2.lastScheduledAt).toBe(new Date(hour + 3 * HOUR).toISOString());
    // The run started before is not started again, by this berthd or the one before.
    expect(s2.history.filter((r) => r.outcome === 'started')).toHaveLength(1);
    expect((await client.sessions.list({ project: 'web', limit: 100 })).items.filter((x) => x.name.startsWith('downtime-')).map((x) => x.name)).toEqual(['downtime-1']);
    await cleanup('downtime');
  }, 300_000);

  it('refuses an invalid cron expression or time zone through the CLI, with its code and a hint', async () => {
    const berth = async (...args: string[]) => {
      try {
        const r = await exec(process.execPath, [BERTH_BIN, '--socket', socket, ...args], { env: { PATH: process.env.PATH, HOME: home } });
        return { code: 0, stdout: r.stdout, stderr: r.stderr };
      } catch (err) {
        const e = err as { code: number; stdout: string; stderr: string };
        return { code: e.code, stdout: e.stdout, stderr: e.stderr };
      }
    };
    const cron = await berth('schedule', 'add', 'bad', '--cron', '61 * * * *', '-p', 'web', '-a', 'sleeper');
    expect(cron.code).toBe(1);
    expect(cron.stderr).toContain('SCHEDULE_CRON_INVALID');
    expect(cron.stderr).toContain('minute');
    expect(cron.stderr).toContain('five fields');
    const tz = await berth('schedule', 'add', 'bad', '--cron', '0 3 * * *', '--tz', 'Mars/Olympus', '-p', 'web', '-a', 'sleeper');
    expect(tz.code).toBe(1);
    expect(tz.stderr).toContain('SCHEDULE_TZ_INVALID');
    expect(tz.stderr).toContain('Europe/Berlin');
    const json = await berth('--json', 'schedule', 'add', 'bad', '--cron', '0 3 * * * *', '-p', 'web', '-a', 'sleeper');
    expect(JSON.parse(json.stderr).error.code).toBe('SCHEDULE_CRON_INVALID');
    expect((await client.schedules.list({})).map((s) => s.name)).not.toContain('bad');

    const ok = await berth('schedule', 'add', 'weekdays', '--cron', '0 3 * * 1-5', '--tz', 'Europe/Berlin', '-p', 'web', '-a', 'sleeper', '--concurrency', 'replace', '--', 'sh', '-c', 'echo hi');
    expect(ok.code, ok.stderr).toBe(0);
    const s = await client.schedules.get({ name: 'weekdays' });
    expect(s).toMatchObject({ tz: 'Europe/Berlin', concurrency: 'replace', command: ['sh', '-c', 'echo hi'], startingDeadlineSec: 600 });
    const show = await berth('schedule', 'show', 'weekdays');
    expect(show.stdout).toContain('0 3 * * 1-5 (Europe/Berlin)');
    const upd = await berth('schedule', 'update', 'weekdays', '--no-tz', '--suspend', '--agent-command', '--starting-deadline', '1h');
    expect(upd.code, upd.stderr).toBe(0);
    expect(await client.schedules.get({ name: 'weekdays' })).toMatchObject({ tz: null, suspended: true, command: null, startingDeadlineSec: 3600, nextRunAt: null });
    const ls = await berth('schedule', 'ls', '-q');
    expect(ls.stdout.split('\n')).toContain('weekdays');
    const rm = await berth('schedule', 'rm', 'weekdays');
    expect(rm.code).toBe(0);
    expect((await berth('schedule', 'show', 'weekdays')).stderr).toContain('SCHEDULE_NOT_FOUND');
  }, 120_000);
});
