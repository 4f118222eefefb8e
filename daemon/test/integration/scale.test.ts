import { describe, expect, it } from 'vitest';
import { startEngineProxy } from '../../../bench/engine-proxy.mjs';
import { addHistory } from '../../../bench/history.mjs';
import { docker } from '../helpers/docker.js';
import { poll, sh, startDaemon, startWithProject } from '../helpers/daemon.js';

const HISTORY = 20_000;

/**
 * History does not make berthd work: with 20,000 settled sessions and a few live ones, a resync is
 * one container listing and nothing per row; the live sessions are adopted and still change when
 * the engine changes them; `sessions.list {active}` and image usage read what they need.
 * Engine calls are counted by a pass-through in front of the real engine.
 */
describe('a berthd with months of history', () => {
  it('resyncs from one listing, not per row, and still sees what changes', async () => {
    const proxyPath = `/tmp/bt-engine-${process.pid}.sock`;
    const proxy = await startEngineProxy(proxyPath);
    const env = { DOCKER_HOST: `unix://${proxyPath}`, BERTH_RESYNC_SEC: '1', BERTH_ORPHAN_GRACE_SEC: '1' };
    const first = await startWithProject({ env });
    let d = first.d;
    try {
      await d.client.agents.define({ name: 'coder', command: sh('sleep 3600'), readOnly: true });
      const live = [];
      for (let i = 0; i < 3; i++) live.push(await d.client.sessions.start({ project: 'web', agent: 'coder', name: `live-${i}`, restartPolicy: 'never' }));
      await poll(async () => (await d.client.sessions.list({ active: true })).items.every((s) => s.state === 'running'), 120_000, 'live sessions running');
      const image = live[0]!.image;
      const home = d.home;
      await d.stop('SIGKILL');
      addHistory(home, live[0]!.id, HISTORY);

      d = await startDaemon({ home, env });
      // Adopted, not restarted: the same containers.
      await poll(async () => {
        const items = (await d.client.sessions.list({ active: true })).items;
        return items.length === 3 && items.every((s, i) => s.state === 'running' && s.containerId === live[i]!.containerId);
      }, 120_000, 'live sessions adopted');

      // Idle: a few resyncs' worth of engine calls.
      await new Promise((r) => setTimeout(r, 1500));
      proxy.reset();
      const t0 = Date.now();
      await new Promise((r) => setTimeout(r, 5000));
      const seconds = (Date.now() - t0) / 1000;
      const calls = proxy.snapshot();
      const listings = calls['GET /containers/json'] ?? 0;
      const inspects = calls['GET /containers/:id/json'] ?? 0;
      console.log(`idle ${seconds.toFixed(1)} s with ${HISTORY} rows of history: ${JSON.stringify(calls)}`);
      expect(listings).toBeGreaterThanOrEqual(1);
      // One listing per resync (about one a second) and nothing per settled row.
      expect(inspects).toBeLessThanOrEqual(3 * listings);
      expect(proxy.total()).toBeLessThan(HISTORY / 100);

      // What changes behind berth's back is still seen: a live container stopped by hand.
      await docker('stop', '-t', '0', live[1]!.containerId!);
      await poll(async () => (await d.client.sessions.get({ id: live[1]!.id })).state === 'exited', 120_000, 'stopped container seen as exited');

      // Filters are the server's: the default ps page has only what runs; history is all there.
      const active = await d.client.sessions.list({ active: true });
      expect(active.items.map((s) => s.name).sort()).toEqual(['live-0', 'live-2']);
      expect((await d.client.sessions.list({ state: 'stopped', limit: 1000 })).items).toHaveLength(1000);
      const first100 = await d.client.sessions.list({});
      expect(first100.items).toHaveLength(100);
      expect(first100.items[0]).toMatchObject({ image, command: ['sh', '-c', 'sleep 3600'] });
      const used = (await d.client.images.list()).find((i) => i.name === image || i.name === `${image}:latest`);
      if (used) expect(used.usedBy.sessions.length).toBe(HISTORY + 3);
      await expect(d.client.images.remove({ name: image })).rejects.toMatchObject({ code: 'IMAGE_IN_USE' });
    } finally {
      await d[Symbol.asyncDispose]().catch(() => {});
      await first.d[Symbol.asyncDispose]().catch(() => {});
      await proxy.close();
    }
  }, 300_000);
});
