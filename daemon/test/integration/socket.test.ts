import { mkdir, stat, writeFile, rm, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { rawRpc, spawnDaemon, startDaemon, tempDir } from '../helpers/daemon.js';

describe('the socket and the daemon lifecycle', () => {
  it('creates the socket 0600 inside a 0700 directory it creates', async () => {
    const home = await tempDir();
    try {
      const sockDir = join(home, 'run', 'berth');
      await using d = await startDaemon({ home, env: { BERTH_SOCKET: join(sockDir, 'b.sock') } });
      expect((await stat(d.socket)).mode & 0o777).toBe(0o600);
      expect((await stat(sockDir)).mode & 0o777).toBe(0o700);
      expect((await stat(home)).mode & 0o777).toBe(0o700);
    } finally {
      await rm(home, { recursive: true, force: true });
    }
  });

  it('replaces a stale socket left by a daemon killed with -9', async () => {
    const home = await tempDir();
    try {
      const first = await startDaemon({ home });
      await first.client.agents.define({ name: 'survivor', command: ['true'] });
      await first.stop('SIGKILL');
      expect((await stat(first.socket)).isSocket()).toBe(true);

      await using second = await startDaemon({ home });
      expect(second.output).toMatch(/stale socket/);
      // State survived the crash.
      expect((await second.client.agents.get({ name: 'survivor' })).command).toEqual(['true']);
    } finally {
      await rm(home, { recursive: true, force: true });
    }
  });

  it('refuses a second daemon on the same socket and names the pid that holds it', async () => {
    await using first = await startDaemon();
    const second = spawnDaemon({ home: first.home });
    const code = await second.waitExit();
    expect(code).not.toBe(0);
    expect(second.output).toContain('SOCKET_IN_USE');
    expect(second.output).toContain(`pid ${first.pid}`);
    // The first one is untouched and still serves.
    expect((await first.client.daemon.status()).pid).toBe(first.pid);
  });

  it('refuses a socket path over the OS limit with a clear message', async () => {
    const home = await tempDir();
    try {
      const long = join(home, 'x'.repeat(120), 'berth.sock');
      const d = spawnDaemon({ home, env: { BERTH_SOCKET: long } });
      expect(await d.waitExit()).not.toBe(0);
      expect(d.output).toContain('SOCKET_PATH_TOO_LONG');
      expect(d.output).toMatch(/107-byte limit/);
    } finally {
      await rm(home, { recursive: true, force: true });
    }
  });

  it('never replaces something that is not a socket', async () => {
    const home = await tempDir();
    try {
      const path = join(home, 'berth.sock');
      await writeFile(path, 'precious');
      const d = spawnDaemon({ home });
      expect(await d.waitExit()).not.toBe(0);
      expect(d.output).toContain('SOCKET_PATH_NOT_SOCKET');
      expect(await readFile(path, 'utf8')).toBe('precious');
    } finally {
      await rm(home, { recursive: true, force: true });
    }
  });

  it('on SIGTERM answers what was already asked, removes the socket and exits 0', async () => {
    const home = await tempDir();
    try {
      await mkdir(join(home, 'projects'), { recursive: true });
      const d = await startDaemon({ home });
      const inflight = Array.from({ length: 50 }, (_, i) =>
        rawRpc(d.socket, JSON.stringify({ jsonrpc: '2.0', method: 'agents.define', params: { name: `a${i}`, command: ['true'] }, id: i })),
      );
      const all = Promise.allSettled(inflight);
      // Let the requests reach the daemon before the signal.
      await new Promise((r) => setTimeout(r, 20));
      const code = await d.stop('SIGTERM');
      const settled = await all;
      expect(code).toBe(0);
      await expect(stat(d.socket)).rejects.toMatchObject({ code: 'ENOENT' });
      expect(d.output).toContain('Stopped berthd');
      // Every request either got its answer or was refused before being read: nothing answered is lost.
      const answered = settled.flatMap((s) =>
        s.status === 'fulfilled' && s.value.status === 200 ? [(s.value.body as { result: { name: string } }).result.name] : [],
      );
      expect(answered.length).toBeGreaterThan(0);
      const again = await startDaemon({ home });
      const names = (await again.client.agents.list()).map((a) => a.name);
      for (const n of answered) expect(names).toContain(n);
      await again[Symbol.asyncDispose]();
    } finally {
      await rm(home, { recursive: true, force: true });
    }
  });

  it('exits 0 on SIGINT too', async () => {
    const d = await startDaemon();
    expect(await d.stop('SIGINT')).toBe(0);
    await d[Symbol.asyncDispose]();
  });
});
