import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { poll, sh, startDaemon, startWithProject } from '../helpers/daemon.js';

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

/** AGENT_MODE=local: bare processes behind the same runtime port, with the same lifecycle. */
describe('AGENT_MODE=local', () => {
  it('runs, logs, execs, stops, survives a daemon kill -9, and removes a local agent', async () => {
    const { d, repo } = await startWithProject({ env: { AGENT_MODE: 'local' } });
    expect(d.output).toMatch(/AGENT_MODE=local: agents run as bare processes with no isolation/);
    const c = d.client;
    await c.agents.define({ name: 'ticker', command: sh('echo started in $(pwd); i=0; while true; do echo "t $i"; i=$((i+1)); sleep 0.1; done') });
    const s = await c.sessions.start({ project: 'web', agent: 'ticker' });
    expect(s.state).toBe('running');
    const status = await c.daemon.status();
    expect(status.engine.host).toMatch(/local processes/);

    await poll(async () => (await c.sessions.logs({ id: s.id })).length > 3, 10_000, 'local logs');
    const logs = await c.sessions.logs({ id: s.id });
    expect(s.checkout!.dir).toBe(`${d.home}/checkouts/web/${s.name}`);
    expect(logs[0]).toMatchObject({ stream: 'stdout', line: `started in ${s.checkout!.dir}` });
    expect((await c.sessions.exec({ id: s.id, cmd: sh('pwd; echo $BERTH_SESSION') })).stdout).toBe(`${s.checkout!.dir}\n${s.id}\n`);

    // The agent outlives a daemon killed with -9, and is adopted, not restarted.
    const state = JSON.parse(await readFile(join(d.home, 'local', 'containers', s.containerId!, 'state.json'), 'utf8')) as { pid: number };
    await d.stop('SIGKILL');
    expect(alive(state.pid)).toBe(true);
    const d2 = await startDaemon({ home: d.home, ownsHome: true, env: { AGENT_MODE: 'local' } });
    try {
      expect(await d2.client.sessions.get({ id: s.id })).toMatchObject({ state: 'running', containerId: s.containerId, restartCount: 0 });
      expect(alive(state.pid)).toBe(true);

      const stopped = await d2.client.sessions.stop({ id: s.id, timeoutSec: 2 });
      expect(stopped.state).toBe('stopped');
      expect(alive(state.pid)).toBe(false);

      await d2.client.agents.define({ name: 'quitter', command: sh('echo bye; exit 4'), restartPolicy: 'never' });
      const q = await d2.client.sessions.start({ project: 'web', agent: 'quitter' });
      const done = await poll(async () => {
        const x = await d2.client.sessions.get({ id: q.id });
        return x.state === 'exited' ? x : null;
      });
      expect(done.exitCode).toBe(4);

      await d2.client.sessions.remove({ id: s.id });
      await d2.client.sessions.remove({ id: q.id });
      expect((await d2.client.sessions.list({})).items).toEqual([]);
    } finally {
      await d2[Symbol.asyncDispose]();
    }
  });
});
