import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BerthEvent } from '@berth/client-sdk/protocol';
import { poll, sh, spawnDaemon, startWithProject, type DaemonProcess } from '../helpers/daemon.js';
import { TEST_IMAGE } from '../helpers/docker.js';

/**
 * Stuck agents on the real engine, with a short timeout (6 s) and a check every second: one that
 * prints and then hangs is called stuck and restarted; one that only writes files, and one waiting
 * for a person (a Notification hook through its bridge), are left alone.
 */
describe('stuck agents', () => {
  let d: DaemonProcess;
  const events: BerthEvent[] = [];
  const ac = new AbortController();
  const env = { BERTH_ACTIVITY_CHECK_SEC: '1' };
  const listen = () =>
    void (async () => {
      for await (const e of d.client.events({ signal: ac.signal })) events.push(e);
    })().catch(() => {});

  beforeAll(async () => {
    ({ d } = await startWithProject({ env }));
    listen();
    await d.client.agents.define({ name: 'hang', image: TEST_IMAGE, readOnly: true, stuckAfterSec: 6, command: sh('echo started; sleep 100000') });
    await d.client.agents.define({ name: 'writer', image: TEST_IMAGE, stuckAfterSec: 6, command: sh('i=0; while true; do i=$((i+1)); echo $i > /workspace/progress.txt; sleep 2; done') });
    await d.client.agents.define({
      name: 'asking',
      image: 'berth-offline-base:bookworm',
      readOnly: true,
      stuckAfterSec: 6,
      command: [
        'node',
        '-e',
        `require('node:http').request({ socketPath: process.env.CLAUDE_BRIDGE_SOCKET, path: '/rpc', method: 'POST' }, (r) => r.resume())
          .end(JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'bridge.hook', params: { event: 'Notification', payload: { message: 'May I run rm?' } } }));
         setInterval(() => {}, 1 << 30);`,
      ],
    });
    await d.client.agents.define({ name: 'quiet', image: TEST_IMAGE, readOnly: true, stuckAfterSec: 6, onStuck: 'notify', command: sh('echo started; sleep 100000') });
  }, 120_000);

  afterAll(async () => {
    ac.abort();
    await d?.[Symbol.asyncDispose]();
  });

  it('an agent that printed, then hangs, becomes stuck and is restarted (counted, with the crash backoff)', async () => {
    const s = await d.client.sessions.start({ project: 'web', agent: 'hang' });
    const e = await poll(async () => events.find((x) => x.type === 'session.activity' && x.data.id === s.id && x.data.activity.state === 'stuck'), 60_000, 'stuck');
    expect(e.type === 'session.activity' && e.data.activity.reason).toMatch(/^no output, file change, hook or CPU for \d+s$/);
    const again = await poll(async () => {
      const x = await d.client.sessions.get({ id: s.id });
      return x.restartCount === 1 && x.state === 'running' && x.containerId !== s.containerId ? x : null;
    }, 90_000, 'the restart');
    expect(again.activity?.state ?? 'starting').not.toBe('stuck');
  }, 180_000);

  it('an agent that writes files without printing, and one waiting for input, are never called stuck', async () => {
    const writer = await d.client.sessions.start({ project: 'web', agent: 'writer' });
    const asking = await d.client.sessions.start({ project: 'web', agent: 'asking' });
    await poll(async () => (await d.client.sessions.get({ id: asking.id })).activity?.state === 'waiting-input', 20_000, 'waiting-input');
    // Three times the timeout.
    await new Promise((r) => setTimeout(r, 18_000));
    for (const s of [writer, asking]) {
      const x = await d.client.sessions.get({ id: s.id });
      expect(x.restartCount, s.name).toBe(0);
      expect(x.containerId, s.name).toBe(s.containerId);
      expect(events.some((e) => e.type === 'session.activity' && e.data.id === s.id && e.data.activity.state === 'stuck'), s.name).toBe(false);
    }
    expect((await d.client.sessions.get({ id: writer.id })).activity?.lastFileChangeAt).toBeTruthy();
  }, 180_000);

  it('a berthd down for longer than the timeout: the quiet agent is stuck counted from before, the working one is not', async () => {
    const quiet = await d.client.sessions.start({ project: 'web', agent: 'quiet' });
    const writer = await d.client.sessions.start({ project: 'web', agent: 'writer' });
    await poll(async () => (await d.client.sessions.logs({ id: quiet.id })).some((l) => l.line === 'started'), 30_000, 'its output');
    d.proc.kill('SIGKILL');
    await d.waitExit();
    // Down for twice the timeout (6 s): the writer goes on writing, the quiet one stays quiet.
    await new Promise((r) => setTimeout(r, 12_000));
    d = spawnDaemon({ home: d.home, ownsHome: true, env });
    await d.waitReady(60_000);
    const back = Date.now();
    listen();
    const e = await poll(async () => events.find((x) => x.type === 'session.activity' && x.data.id === quiet.id && x.data.activity.state === 'stuck'), 60_000, 'stuck after the restart');
    // Quiet for as long as it really was: the timer is the stored output time, not berthd's start.
    const said = /for (\d+)s$/.exec((e.type === 'session.activity' && e.data.activity.reason) || '');
    expect(Number(said?.[1])).toBeGreaterThanOrEqual(12);
    await poll(async () => events.some((x) => x.type === 'notification' && x.data.kind === 'stuck' && x.data.session.id === quiet.id), 10_000, 'its notification');
    // The writer, watched again by the new berthd for three times the timeout, is never called stuck.
    await new Promise((r) => setTimeout(r, Math.max(0, back + 18_000 - Date.now())));
    const w = await d.client.sessions.get({ id: writer.id });
    expect(w.containerId).toBe(writer.containerId);
    expect(w.restartCount).toBe(0);
    expect(events.some((x) => x.type === 'session.activity' && x.data.id === writer.id && x.data.activity.state === 'stuck')).toBe(false);
    // onStuck notify: left running.
    expect((await d.client.sessions.get({ id: quiet.id })).containerId).toBe(quiet.containerId);
  }, 240_000);
});
