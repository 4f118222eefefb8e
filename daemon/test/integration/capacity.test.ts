import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Session } from '@berth/client-sdk/protocol';
import { poll, sh, startWithProject, type DaemonProcess } from '../helpers/daemon.js';
import { TEST_IMAGE } from '../helpers/docker.js';

/** BERTH_MAX_RUNNING on the real engine: starts beyond the cap wait, and start by themselves in order. */
describe('capacity cap', () => {
  let d: DaemonProcess;
  let repo: string;

  beforeAll(async () => {
    ({ d, repo } = await startWithProject({ env: { BERTH_MAX_RUNNING: '2' } }));
    // A job works until the test opens the gate (a file in the shared checkout), so how fast the
    // machine is cannot free a slot early.
    await d.client.agents.define({ name: 'job', image: TEST_IMAGE, readOnly: true, restartPolicy: 'never', command: sh('echo working; until [ -e /workspace/gate ]; do sleep 0.2; done; sleep 3; exit 0') });
  }, 120_000);

  afterAll(async () => {
    await d?.[Symbol.asyncDispose]();
  });

  it('5 starts with a cap of 2: 2 run, 3 wait as pending and return at once, all 5 finish, in order', async () => {
    const started: Session[] = [];
    for (let i = 0; i < 5; i++) started.push(await d.client.sessions.start({ project: 'web', agent: 'job', name: `job-${i}` }));
    expect(started.map((s) => s.queued)).toEqual([false, false, true, true, true]);
    expect(started.slice(2).every((s) => s.state === 'pending')).toBe(true);
    const ps = (await d.client.sessions.list({ active: true })).items;
    expect(ps.filter((s) => s.state === 'running').length).toBeLessThanOrEqual(2);
    writeFileSync(join(repo, 'gate'), '');

    // Never more than 2 at once while they drain.
    let most = 0;
    const done = await poll(async () => {
      const items = (await d.client.sessions.list({ limit: 100 })).items.filter((s) => s.name.startsWith('job-'));
      most = Math.max(most, items.filter((s) => s.state === 'running' || s.state === 'creating').length);
      return items.every((s) => s.state === 'exited') ? items : null;
    }, 120_000, 'all five to finish');
    expect(most).toBeLessThanOrEqual(2);
    expect(done.every((s) => s.exitCode === 0 && !s.queued)).toBe(true);
    const order = [...done].sort((a, b) => Date.parse(a.startedAt!) - Date.parse(b.startedAt!)).map((s) => s.name);
    // The two first ran together; the waiting ones started in the order they were asked for.
    expect(order.slice(2)).toEqual(['job-2', 'job-3', 'job-4']);
  }, 240_000);

  it('a higher --priority goes first among those waiting', async () => {
    // Every session here runs until stopped, so nothing frees a slot but the test.
    await d.client.agents.define({ name: 'hold', image: TEST_IMAGE, readOnly: true, restartPolicy: 'never', command: sh('sleep 600') });
    const fills = [];
    for (let i = 0; i < 2; i++) fills.push(await d.client.sessions.start({ project: 'web', agent: 'hold', name: `fill-${i}` }));
    const low = await d.client.sessions.start({ project: 'web', agent: 'hold', name: 'low' });
    const high = await d.client.sessions.start({ project: 'web', agent: 'hold', name: 'high', priority: 5 });
    expect([low.queued, high.queued]).toEqual([true, true]);

    // One slot frees: the higher priority takes it, the lower one still waits.
    await d.client.sessions.stop({ id: fills[0]!.id, timeoutSec: 1 });
    await poll(async () => ((await d.client.sessions.get({ id: high.id })).startedAt ? true : null), 120_000, 'high to start');
    expect((await d.client.sessions.get({ id: low.id })).queued).toBe(true);

    await d.client.sessions.stop({ id: fills[1]!.id, timeoutSec: 1 });
    await poll(async () => ((await d.client.sessions.get({ id: low.id })).startedAt ? true : null), 120_000, 'low to start');
  }, 240_000);
});
