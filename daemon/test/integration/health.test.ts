import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { BerthEvent, HealthReport } from '@berth/client-sdk';
import { describe, expect, it } from 'vitest';
import { EngineProxy } from '../helpers/docker.js';
import { getJson, poll, startDaemon, tempDir } from '../helpers/daemon.js';

const health = async (socket: string) => {
  const r = await getJson(socket, '/health');
  return { status: r.status, report: r.body as HealthReport };
};
const check = (r: HealthReport, name: string) => r.checks.find((c) => c.name === name)!;

/**
 * The engine is really stopped and started for the daemon: it reaches the real dockerd only through
 * a Unix-socket proxy that the test takes down and brings back.
 */
describe('/health and the engine', () => {
  it('is 200 with named checks when store, engine and default image are there', async () => {
    await using d = await startDaemon();
    const { status, report } = await health(d.socket);
    expect(status).toBe(200);
    expect(report.status).toBe('ok');
    expect(report.checks.map((c) => c.name)).toEqual(['store', 'engine', 'default-image', 'config']);
    expect(check(report, 'config')).toMatchObject({ ok: true, warning: true });
    expect(check(report, 'engine').detail).toMatch(/Docker .* \(API \d+\.\d+\)/);
  });

  it('is 503 with a remediation line when the default image is missing', async () => {
    await using d = await startDaemon({ env: { AGENT_DEFAULT_IMAGE: 'berth-test-no-such-image:never' } });
    const { status, report } = await health(d.socket);
    expect(status).toBe(503);
    const img = check(report, 'default-image');
    expect(img.ok).toBe(false);
    expect(img.remediation).toMatch(/docker build|AGENT_DEFAULT_IMAGE/);
    expect(d.output).toMatch(/Default agent image berth-test-no-such-image:never is missing/);
  });

  it('goes 503 when the engine stops and back to 200 when it returns, announcing both', async () => {
    const dir = await tempDir('bt-px-');
    const proxy = new EngineProxy(join(dir, 'docker.sock'));
    await proxy.start();
    try {
      await using d = await startDaemon({ env: { DOCKER_HOST: proxy.dockerHost } });
      expect((await health(d.socket)).status).toBe(200);

      const events: BerthEvent[] = [];
      const ctl = new AbortController();
      const reading = (async () => {
        for await (const e of d.client.events({ signal: ctl.signal })) events.push(e);
      })().catch(() => {});
      // The stream is live once it carries an event made after it was opened (a busy machine may
      // take longer than any fixed pause to open it, and then miss the engine going away).
      await d.client.agents.define({ name: 'probe', command: ['true'] });
      await poll(async () => events.some((e) => e.type === 'agent.defined') || null, 60_000, 'the event stream to be live');

      await proxy.stop();
      const down = await health(d.socket);
      expect(down.status).toBe(503);
      const engine = check(down.report, 'engine');
      expect(engine.ok).toBe(false);
      expect(engine.remediation).toMatch(/Start the Docker engine/);
      const s = await d.client.daemon.status();
      expect(s.engine.available).toBe(false);
      expect(s.config.agentMode).toBe('docker'); // never a silent fallback to local

      await proxy.start();
      // Nobody asks: the daemon's own retry loop must notice the engine is back.
      await poll(async () => events.some((e) => e.type === 'engine.available'), 40_000, 'engine.available event');
      expect((await health(d.socket)).status).toBe(200);
      ctl.abort();
      await reading;
      const types = events.map((e) => e.type);
      expect(types).toContain('engine.unavailable');
      expect(types.indexOf('engine.unavailable')).toBeLessThan(types.lastIndexOf('engine.available'));
      expect(events.filter((e) => e.type === 'daemon.health').map((e) => (e.data as { status: string }).status)).toEqual(['fail', 'ok']);
    } finally {
      await proxy.stop();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('starts without an engine, says so once with the fix, and recovers on its own', async () => {
    const dir = await tempDir('bt-px-');
    const proxy = new EngineProxy(join(dir, 'docker.sock'));
    try {
      await using d = await startDaemon({ env: { DOCKER_HOST: proxy.dockerHost } });
      const s = await d.client.daemon.status();
      expect(s.engine).toMatchObject({ available: false, host: proxy.dockerHost });
      expect(s.health.status).toBe('fail');
      expect((await health(d.socket)).status).toBe(503);
      // Projects and agents still work while the engine is away.
      await d.client.agents.define({ name: 'a', command: ['true'] });
      const unreachable = d.output.match(/Docker engine unreachable/g) ?? [];
      expect(unreachable).toHaveLength(1);
      expect(d.output).toContain('systemctl start docker');

      await proxy.start();
      await d.waitForLog('Docker engine available', 40_000);
      expect((await d.client.daemon.status()).engine.available).toBe(true);
    } finally {
      await proxy.stop();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
