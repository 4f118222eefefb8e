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
    // A job works until the test opens its gate (a file named after it in the shared checkout), so
    // only the test frees a slot, one at a time: how fast the machine is decides nothing.
    await d.client.agents.define({ name: 'job', image: TEST_IMAGE, readOnly: true, restartPolicy: 'never', command: sh('echo working; until [ -e /workspace/gate-$BERTH_SESSION ]; do sleep 0.2; done; exit 0') });
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
    const open = (s: Session) => writeFileSync(join(repo, `gate-${s.id}`), '');
    const get = (s: Session) => d.client.sessions.get({ id: s.id });

    // Never more than 2 at once while they drain.
    let most = 0;
    const sample = async () => {
      const items = (await d.client.sessions.list({ limit: 100 })).items.filter((s) => s.name.startsWith('job-'));
      most = Math.max(most, items.filter((s) => s.state === 'running' || s.state === 'creating').length);
      return items;
    };
    // Each freed slot goes to the one waiting longest: job-2, then job-3, then job-4.
    for (let k = 0; k < 3; k++) {
      open(started[k]!);
      const next = started[k + 2]!;
      await poll(async () => ((await sample(), await get(next)).queued ? null : true), 120_000, `${next.name} to get the freed slot`);
      for (const later of started.slice(k + 3)) expect((await get(later)).queued, `${later.name} still waits`).toBe(true);
    }
    for (const s of started.slice(3)) open(s);
    const done = await poll(async () => {
      const items = await sample();
      return items.every((s) => s.state === 'exited') ? items : null;
    }, 120_000, 'all five to finish');
    expect(most).toBeLessThanOrEqual(2);
    expect(done.every((s) => s.exitCode === 0 && !s.queued)).toBe(true);
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
