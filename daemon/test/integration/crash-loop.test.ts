import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/index.js';
import { EventBus } from '../../src/events/bus.js';
import { Reconciler } from '../../src/reconcile/controller.js';
import { DockerRuntime } from '../../src/runtime/docker/engine.js';
import { Secrets } from '../../src/sessions/secrets.js';
import { SessionService } from '../../src/sessions/service.js';
import { SessionCheckouts } from '../../src/sessions/checkouts.js';
import { CheckoutManager } from '../../src/checkouts/manager.js';
import { setGitGlobalConfig } from '../../src/checkouts/git.js';
import { ImageService } from '../../src/images/service.js';
import { Devcontainers } from '../../src/images/devcontainer.js';
import { Store } from '../../src/store/index.js';
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
  const loops = new AbortController();

  beforeAll(async () => {
    home = await tempDir();
    await mkdir(join(home, 'shared'), { recursive: true });
    setGitGlobalConfig(join(home, 'gitconfig')); // as main does
    const repo = await makeRepo(join(home, 'projects', 'web'));
    const config = loadConfig({ env: { HOME: home, BERTH_HOME: home, PROJECTS_ROOT: join(home, 'projects'), AGENT_DEFAULT_IMAGE: 'berth-test-busybox:latest' } });
    store = Store.open(join(home, 'berth.db'));
    clock = new FakeClock(Date.now());
    const bus = new EventBus();
    const log = pino({ level: 'silent' });
    const runtime = new DockerRuntime({ dockerHost: null });
    reconciler = new Reconciler(
      { sessions: store.sessions, runtime, bus, log, clock, secrets: new Secrets(home), instanceId: store.meta.instanceId() },
      { workers: 2, resyncMs: 1e9 },
    );
    void reconciler.start(loops.signal);
    const checkouts = new SessionCheckouts(new CheckoutManager(home, log), store.sessions, store.projects, log);
    const images = new ImageService(runtime, { agents: store.agents, projects: store.projects, sessions: store.sessions }, bus, log, { defaultImage: config.agentDefaultImage, imagesDir: config.imagesDir, buildCaCerts: config.buildCaCerts });
    sessions = new SessionService({
      sessions: store.sessions,
      projects: store.projects,
      agents: store.agents,
      runtime,
      reconciler,
      bus,
      config,
      log,
      checkouts,
      images,
      devcontainers: new Devcontainers(log),
    });
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
    store.close();
    await removeInstanceObjects(home);
    await rm(home, { recursive: true, force: true });
  });

  it('restarts after 10 s, 20 s, 40 s of (fake) time, the same container each time', async () => {
    const s = await sessions.start({ project: 'web', agent: 'crasher' });
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
