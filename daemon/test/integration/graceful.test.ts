import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { poll, sh, startWithProject, spawnDaemon, type DaemonProcess } from '../helpers/daemon.js';
import { docker, TEST_IMAGE } from '../helpers/docker.js';

/**
 * Graceful stop on the real engine: the agent finds /host/stop-requested (written by berthd in the
 * session's bridge directory), finishes its unit of work and exits; or ignores it and is stopped at
 * the deadline. Neither comes back through its restart policy.
 */
describe('graceful stop', () => {
  let d: DaemonProcess;

  beforeAll(async () => {
    ({ d } = await startWithProject());
    // Works in units of 1 s; between units it looks for the request, finishes the unit, and exits 0.
    await d.client.agents.define({
      name: 'polite',
      image: TEST_IMAGE,
      readOnly: true,
      restartPolicy: 'always',
      command: sh('echo started; while [ ! -e /host/stop-requested ]; do sleep 1; echo unit; done; echo "finishing: $(cat /host/stop-requested)"; sleep 1; echo done; exit 0'),
    });
    await d.client.agents.define({ name: 'deaf', image: TEST_IMAGE, readOnly: true, restartPolicy: 'always', command: sh('trap "" TERM; while true; do sleep 1; done') });
  }, 120_000);

  afterAll(async () => {
    await d?.[Symbol.asyncDispose]();
  });

  const get = (id: string) => d.client.sessions.get({ id });

  it('an agent that honours the request finishes its unit and exits 0; it is not restarted', async () => {
    const s = await d.client.sessions.start({ project: 'web', agent: 'polite' });
    await poll(async () => (await d.client.sessions.logs({ id: s.id })).some((l) => l.line === 'unit'), 30_000, 'a unit of work');
    const asked = await d.client.sessions.stop({ id: s.id, graceful: true, withinSec: 600 });
    expect(asked.state).toBe('running');
    expect(asked.gracefulStop?.deadline).toBeTruthy();
    expect(asked.desired).toBe('stopped');
    const stopped = await poll(async () => {
      const x = await get(s.id);
      return x.state === 'stopped' ? x : null;
    }, 60_000, 'the agent to finish');
    expect(stopped.exitCode).toBe(0);
    expect(stopped.gracefulStop).toBeNull();
    const lines = (await d.client.sessions.logs({ id: s.id })).map((l) => l.line);
    expect(lines).toContain('done');
    expect(lines.find((l) => l.startsWith('finishing: '))).toContain('deadline');
    // Its policy is `always`: still, nothing restarts it.
    await new Promise((r) => setTimeout(r, 3000));
    expect((await get(s.id)).state).toBe('stopped');
    expect(await docker('inspect', '-f', '{{.State.Status}}', stopped.containerId!)).toBe('exited');

    // Started again, it is no longer asked to stop.
    await d.client.sessions.start({ project: 'web', agent: 'polite', name: s.name });
    // A new container: it works units again instead of finding the old request.
    await poll(async () => {
      const x = await get(s.id);
      return x.state === 'running' && x.containerId !== stopped.containerId && (await d.client.sessions.logs({ id: s.id })).some((l) => l.line === 'unit');
    }, 60_000, 'the second start');
    const again = await get(s.id);
    expect(again.state).toBe('running');
    expect(again.gracefulStop).toBeNull();
  }, 180_000);

  it('an agent that ignores it is stopped at the deadline, also across a berthd restart', async () => {
    const s = await d.client.sessions.start({ project: 'web', agent: 'deaf', limits: { cpus: 0.5, memory: '96m' } });
    // nproc and /proc/meminfo show the host's; the agent's real limits are in its environment.
    const env = await d.client.sessions.exec({ id: s.id, cmd: ['sh', '-c', 'echo $BERTH_CPUS $BERTH_MEMORY_BYTES'] });
    expect(env.stdout.trim()).toBe(`0.5 ${96 * 1024 * 1024}`);
    const asked = await d.client.sessions.stop({ id: s.id, graceful: true, withinSec: 8 });
    expect(asked.gracefulStop).not.toBeNull();
    // berthd goes down while the timer runs; the deadline is kept in its database.
    d.proc.kill('SIGKILL');
    await d.waitExit();
    d = spawnDaemon({ home: d.home, ownsHome: true });
    await d.waitReady(60_000);
    expect((await get(s.id)).state).toBe('running');
    const stopped = await poll(async () => {
      const x = await get(s.id);
      return x.state === 'stopped' ? x : null;
    }, 90_000, 'the stop at the deadline');
    expect(Date.parse(stopped.finishedAt!)).toBeGreaterThanOrEqual(Date.parse(asked.gracefulStop!.deadline) - 1000);
    await new Promise((r) => setTimeout(r, 3000));
    expect((await get(s.id)).state).toBe('stopped');
  }, 240_000);
});
