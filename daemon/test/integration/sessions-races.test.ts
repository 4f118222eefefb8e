import { BerthError } from '@berth/client-sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { docker } from '../helpers/docker.js';
import { poll, sh, startDaemon, startWithProject, type DaemonProcess } from '../helpers/daemon.js';

const inspect = async (id: string) => JSON.parse(await docker('inspect', id))[0];
const containersOf = async (instance: string, session?: string) =>
  (await docker('ps', '-aq', '--no-trunc', '--filter', `label=dev.berth.instance=${instance}`, ...(session ? ['--filter', `label=dev.berth.session=${session}`] : [])))
    .split('\n')
    .filter(Boolean);

describe('races and adoption', () => {
  let d: DaemonProcess;

  beforeAll(async () => {
    ({ d } = await startWithProject());
    await d.client.agents.define({ name: 'sleeper', command: sh('sleep 3600') });
    // Ignores SIGTERM: only SIGKILL after the stop timeout ends it.
    await d.client.agents.define({ name: 'stubborn', command: sh("trap '' TERM; while true; do sleep 0.1; done"), restartPolicy: 'always' });
  });
  afterAll(async () => {
    await d?.[Symbol.asyncDispose]();
  });

  it('stop while starting: the session ends stopped, with at most one container, not running', async () => {
    const starting = d.client.sessions.start({ project: 'web', agent: 'sleeper', name: 'stop-while-starting' }).catch((e: unknown) => e);
    // Stop as soon as the session exists, while its container is being made.
    const s = await poll(async () => (await d.client.sessions.list({})).items.find((x) => x.name === 'stop-while-starting'), 10_000, 'session row');
    const stopped = await d.client.sessions.stop({ id: s.id, timeoutSec: 1 });
    await starting;
    expect(stopped.desired).toBe('stopped');
    const final = await poll(async () => {
      const x = await d.client.sessions.get({ id: s.id });
      return x.state === 'stopped' ? x : null;
    });
    const cs = await containersOf(d.instanceId!, s.id);
    expect(cs.length).toBeLessThanOrEqual(1);
    for (const c of cs) expect((await inspect(c)).State.Running).toBe(false);
    expect(final.restartCount).toBe(0);
    await d.client.sessions.remove({ id: s.id });
  });

  it('start called twice with one name: one session, one container', async () => {
    const [a, b] = await Promise.all([
      d.client.sessions.start({ project: 'web', agent: 'sleeper', name: 'twice' }),
      d.client.sessions.start({ project: 'web', agent: 'sleeper', name: 'twice' }),
    ]);
    expect(a.id).toBe(b.id);
    expect(a.containerId).toBe(b.containerId);
    expect(await containersOf(d.instanceId!, a.id)).toHaveLength(1);
    // And a third call on the running session changes nothing.
    const c = await d.client.sessions.start({ project: 'web', agent: 'sleeper', name: 'twice' });
    expect(c.containerId).toBe(a.containerId);
    expect((await inspect(a.containerId!)).State.StartedAt).toBe((await inspect(c.containerId!)).State.StartedAt);
    await d.client.sessions.remove({ id: a.id });
  });

  it('an exit caused by a stop never triggers a restart, even under restart policy always', async () => {
    const s = await d.client.sessions.start({ project: 'web', agent: 'stubborn' });
    const stopped = await d.client.sessions.stop({ id: s.id, timeoutSec: 1 });
    expect(stopped.state).toBe('stopped');
    const info = await inspect(s.containerId!);
    expect(info.State.ExitCode).toBe(137); // SIGKILL after the timeout
    await new Promise((r) => setTimeout(r, 1500));
    const later = await d.client.sessions.get({ id: s.id });
    expect(later).toMatchObject({ state: 'stopped', restartCount: 0, nextRestartAt: null });
    expect((await inspect(s.containerId!)).State.Running).toBe(false);
    await d.client.sessions.remove({ id: s.id });
  });

  it('20 concurrent starts in one project get 20 distinct containers and names', async () => {
    const started = await Promise.all(Array.from({ length: 20 }, () => d.client.sessions.start({ project: 'web', agent: 'sleeper' })));
    expect(new Set(started.map((s) => s.id)).size).toBe(20);
    expect(new Set(started.map((s) => s.name)).size).toBe(20);
    expect(new Set(started.map((s) => s.containerName)).size).toBe(20);
    expect(new Set(started.map((s) => s.containerId)).size).toBe(20);
    expect(started.every((s) => s.state === 'running')).toBe(true);
    await Promise.all(started.map((s) => d.client.sessions.remove({ id: s.id })));
    expect(await containersOf(d.instanceId!)).toEqual([]);
  });

  it('kill -9 of berthd with 5 running sessions, then restart: same containers, not restarted, still running, no engine writes', async () => {
    const five = await Promise.all(Array.from({ length: 5 }, () => d.client.sessions.start({ project: 'web', agent: 'sleeper' })));
    const before = await Promise.all(five.map(async (s) => (await inspect(s.containerId!)).State.StartedAt as string));
    // Event times have one-second resolution here: begin the window after the starts' second.
    await new Promise((r) => setTimeout(r, 1100));
    const t0 = Math.ceil(Date.now() / 1000);
    await new Promise((r) => setTimeout(r, Math.max(0, t0 * 1000 - Date.now())));
    await d.stop('SIGKILL');

    d = await startDaemon({ home: d.home, ownsHome: true });
    d.instanceId = (await d.client.daemon.status()).instanceId;
    for (const s of five) {
      const now = await d.client.sessions.get({ id: s.id });
      expect(now).toMatchObject({ state: 'running', containerId: s.containerId, restartCount: 0 });
    }
    const after = await Promise.all(five.map(async (s) => (await inspect(s.containerId!)).State.StartedAt as string));
    expect(after).toEqual(before);
    // Let the adopted daemon resync once more, then ask the engine what happened to our containers.
    await new Promise((r) => setTimeout(r, 1500));
    const t1 = Math.ceil(Date.now() / 1000) + 1;
    const events = await docker('events', '--since', String(t0), '--until', String(t1), '--filter', `label=dev.berth.instance=${d.instanceId}`, '--format', '{{.Action}}');
    expect(events.split('\n').filter(Boolean)).toEqual([]);
    await Promise.all(five.map((s) => d.client.sessions.remove({ id: s.id })));
  });

  it('sweeps orphan containers (ours, with no session) after the grace period, and leaves others alone', async () => {
    await using o = await startDaemon({ env: { BERTH_ORPHAN_GRACE_SEC: '1', BERTH_RESYNC_SEC: '1' } });
    const inst = (await o.client.daemon.status()).instanceId;
    const orphan = await docker('run', '-d', '--init', '--label', 'dev.berth.managed=true', '--label', `dev.berth.instance=${inst}`, '--label', 'dev.berth.session=feedfeedfeed', 'berth-test-busybox', 'sleep', '3600');
    const foreign = await docker('run', '-d', '--init', '--label', 'dev.berth.managed=true', '--label', 'dev.berth.instance=someone-else', '--label', 'dev.berth.test=true', 'berth-test-busybox', 'sleep', '3600');
    try {
      await poll(async () => (await docker('ps', '-aq', '--filter', `id=${orphan}`)) === '', 20_000, 'orphan removal');
      expect((await inspect(foreign)).State.Running).toBe(true);
      await o.waitForLog('Removing orphan container');
    } finally {
      await docker('rm', '-f', orphan, foreign).catch(() => {});
    }
  });

  it("a container name another berthd (or a user) holds: the session takes a name of its own and runs; the other is untouched", async () => {
    // Two berthds on one engine, each with a project called the same (tests in parallel, two users).
    await using a = await startDaemon();
    const { makeRepo } = await import('../helpers/daemon.js');
    const { join } = await import('node:path');
    const project = `dup${process.pid}`;
    await a.client.projects.add({ name: project, path: await makeRepo(join(a.home, 'projects', project)) });
    await a.client.agents.define({ name: 'a', command: sh('sleep 3600') });
    const squatter = await docker('create', '--label', 'dev.berth.test=true', '--name', `berth-${project}-1`, 'berth-test-busybox', 'sleep', '3600');
    try {
      const s = await a.client.sessions.start({ project, agent: 'a' });
      expect(s.state).toBe('running');
      const inst = (await a.client.daemon.status()).instanceId;
      expect(s.containerName).toBe(`berth-${project}-1-i${inst.slice(0, 6)}`);
      expect((await inspect(s.containerId!)).Name).toBe(`/${s.containerName}`);
      expect((await inspect(squatter)).State.Status).toBe('created');
      await a.waitForLog('Container name taken by another container');
      await a.client.sessions.remove({ id: s.id });
    } finally {
      await docker('rm', '-f', squatter).catch(() => {});
    }
  });

  it('refuses a project owned by root: agents never run as root', async () => {
    await using r = await startDaemon();
    const { makeRepo } = await import('../helpers/daemon.js');
    const { join } = await import('node:path');
    const path = await makeRepo(join(r.home, 'projects', 'rooted'), { owner: 0 });
    await r.client.projects.add({ name: 'rooted', path });
    await r.client.agents.define({ name: 'a', command: ['true'] });
    const err = await r.client.sessions.start({ project: 'rooted', agent: 'a' }).catch((e: unknown) => e as BerthError);
    expect((err as BerthError).code).toBe('PROJECT_OWNED_BY_ROOT');
  });
});
