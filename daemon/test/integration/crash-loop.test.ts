import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/index.js';
import { buildDaemon } from '../../src/main.js';
import type { Reconciler } from '../../src/reconcile/controller.js';
import { DockerRuntime } from '../../src/runtime/docker/engine.js';
import type { SessionService } from '../../src/sessions/service.js';
import type { Store } from '../../src/store/index.js';
import { FakeClock } from '../helpers/clock.js';
import { docker } from '../helpers/docker.js';
import { makeRepo, poll, removeInstanceObjects, sh, tempDir } from '../helpers/daemon.js';

/**
 * Crash-loop backoff on the real engine with an injected clock: the reconciler's delays run on a
 * FakeClock, so the test moves time instead of sleeping through 10 s, 20 s, 40 s.
 */
describe('crash-loop backoff (real engine, injected clock)', () => {
  let home: string;
  let store: Store;
  let clock: FakeClock;
  let reconciler: Reconciler;
  let sessions: SessionService;
  let checkouts: { stop(): void };
  const loops = new AbortController();

  beforeAll(async () => {
    home = await tempDir();
    await mkdir(join(home, 'shared'), { recursive: true });
    const repo = await makeRepo(join(home, 'projects', 'web'));
    const config = loadConfig({ env: { HOME: home, BERTH_HOME: home, PROJECTS_ROOT: join(home, 'projects'), AGENT_DEFAULT_IMAGE: 'berth-test-busybox:latest' } });
    clock = new FakeClock(Date.now());
    // The daemon's own composition root, with the fake clock; only the reconciler's loop runs (no
    // event watcher, no resync), so the test decides when the reconciler looks.
    const d = buildDaemon(config, { log: pino({ level: 'silent' }), clock, runtime: new DockerRuntime({ dockerHost: null }), reconciler: { workers: 2, resyncMs: 1e9 } });
    ({ store, reconciler, sessions, checkouts } = d);
    void reconciler.start(loops.signal);
    const ts = clock.now().toISOString();
    store.projects.insert({ name: 'web', path: repo, network: null, gitUrl: null, branch: null, sshKeyPath: null, worktrees: 'always', defaultImage: null, createdAt: ts, updatedAt: ts });
    store.agents.upsert({
      name: 'crasher',
      image: null,
      command: sh('sleep 0.3; exit 1'),
      env: {},
      role: null,
      readOnly: false,
      limits: {},
      restartPolicy: 'on-failure',
      network: null,
      readOnlyRootfs: false,
      capAdd: [],
      secrets: {},
      createdAt: ts,
      updatedAt: ts,
    });
  });

  afterAll(async () => {
    loops.abort();
    checkouts.stop();
    store.close();
    await removeInstanceObjects(home);
    await rm(home, { recursive: true, force: true });
  });

  it('restarts after 10 s, 20 s, 40 s of (fake) time, the same container each time', async () => {
    // The start waits on the reconciler, whose retries (a first look before the checkout is ready, on
    // a loaded machine) run on the fake clock: let fake time pass until it runs. The container only
    // crashes after that, and no crash is seen before we enqueue it (no event watcher here).
    const ticking = setInterval(() => clock.advance(1000), 100);
    const s = await sessions.start({ project: 'web', agent: 'crasher' }).finally(() => clearInterval(ticking));
    const containerId = s.containerId!;
    const delays: number[] = [];

    for (let round = 1; round <= 3; round++) {
      // Wait for the real container to exit, then let the reconciler see it (no event watcher here).
      await poll(async () => JSON.parse(await docker('inspect', containerId))[0].State.Status === 'exited', 20_000, 'exit');
      reconciler.enqueue(s.id);
      const rec = await poll(async () => {
        const r = store.sessions.get(s.id)!;
        return r.state === 'exited' && r.crashCount === round && r.nextRestartAt ? r : null;
      }, 10_000, `crash ${round} recorded`);
      const delay = Date.parse(rec.nextRestartAt!) - clock.now().getTime();
      delays.push(delay);
      expect(rec.restartCount).toBe(round - 1);

      // One millisecond short of the deadline: nothing happens.
      clock.advance(delay - 1);
      await new Promise((r) => setTimeout(r, 300));
      expect(store.sessions.get(s.id)!.restartCount).toBe(round - 1);
      expect(JSON.parse(await docker('inspect', containerId))[0].State.Status).toBe('exited');

      // At the deadline the same container is started again.
      clock.advance(1);
      await poll(async () => store.sessions.get(s.id)!.restartCount === round, 10_000, `restart ${round}`);
      expect(store.sessions.get(s.id)!.containerId).toBe(containerId);
    }
    expect(delays).toEqual([10_000, 20_000, 40_000]);
    expect(Number(await docker('inspect', '-f', '{{.RestartCount}}', containerId))).toBe(0); // berth restarted it, not the engine
  });
});
