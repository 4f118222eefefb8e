import { spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { BerthClient, BerthError } from '@berth/client-sdk';
import { describe, expect, it } from 'vitest';
import { BERTH_BIN, poll, spawnDaemon, startDaemon, tempDir } from '../helpers/daemon.js';

/**
 * A (re)starting berthd is reachable at once: it binds its socket before loading the rest and holds
 * the calls that arrive meanwhile; a client that connects before even that waits for a berthd
 * whose pid file says it is starting, and fails at once when none is.
 */

const codeOf = (p: Promise<unknown>) => p.then(() => 'ok', (e: unknown) => (e instanceof BerthError ? e.code : `not a BerthError: ${String(e)}`));

/** A client that would wait ten minutes for a starting daemon: the test's timeout catches a wrong wait. */
const waitingClient = (socketPath: string) => new BerthClient({ socketPath, startWaitMs: 600_000, timeoutMs: 600_000 });

describe('startup: a restarting berthd is answered, not refused', () => {
  it('a call made as soon as berthd announces itself (its pid file) is answered by that berthd, not refused; so after a clean stop and after kill -9 (stale socket and pid file)', async () => {
    const home = await tempDir();
    try {
      for (const how of ['first start', 'after SIGTERM', 'after kill -9'] as const) {
        const d = spawnDaemon({ home });
        await poll(async () => d.exitCode !== null || readFileSync(`${d.socket}.pid`, 'utf8').trim() === String(d.pid), 60_000, 'the pid file');
        const c = new BerthClient({ socketPath: d.socket });
        try {
          const st = await c.daemon.status();
          expect(st.pid, how).toBe(d.pid);
        } finally {
          c.close();
        }
        if (how === 'after SIGTERM') {
          // The next start finds a stale socket and pid file (the kill -9 case) ...
          await d.stop('SIGKILL');
          expect(existsSync(d.socket)).toBe(true);
          expect(existsSync(`${d.socket}.pid`)).toBe(true);
        } else {
          expect(await d.stop('SIGTERM')).toBe(0);
          // ... a clean stop leaves neither.
          expect(existsSync(d.socket)).toBe(false);
          expect(existsSync(`${d.socket}.pid`)).toBe(false);
        }
      }
    } finally {
      await rm(home, { recursive: true, force: true });
    }
  });

  it('the SDK keeps connecting while the pid file names a live berthd whose socket is not bound yet, and gets its answer once it is', async () => {
    const home = await tempDir();
    const sock = join(home, 'berth.sock');
    // A stand-in berthd (its command line says so) that announces itself, then binds only after the client has tried.
    const script = `
      const fs = require('node:fs'); const http = require('node:http');
      fs.writeFileSync(process.argv[1] + '.pid', process.pid + '\\n');
      const answer = (req, res) => { let b = ''; req.on('data', (c) => (b += c)); req.on('end', () => res.end(JSON.stringify({ jsonrpc: '2.0', id: JSON.parse(b).id, result: { pid: process.pid } }))); };
      process.stdin.once('data', () => http.createServer(answer).listen(process.argv[1]));`;
    const fake = spawn(process.execPath, ['-e', script, sock, 'berthd'], { stdio: ['pipe', 'ignore', 'inherit'] });
    try {
      await poll(async () => existsSync(`${sock}.pid`), 60_000, 'the stand-in pid file');
      const c = waitingClient(sock);
      const answer = c.daemon.status().then(
        (st) => st.pid,
        (e: unknown) => (e instanceof BerthError ? e.code : String(e)),
      );
      // The call is out and has not failed: it is waiting for the bind (an order, not a speed).
      const early = await Promise.race([answer, new Promise((r) => setTimeout(() => r('waiting'), 500))]);
      expect(early).toBe('waiting');
      fake.stdin.write('bind\n');
      expect(await answer).toBe(fake.pid);
      c.close();
    } finally {
      fake.kill('SIGKILL');
      await rm(home, { recursive: true, force: true });
    }
  });

  it('the CLI run at spawn time prints the status instead of DAEMON_UNREACHABLE', async () => {
    const home = await tempDir();
    try {
      const d = spawnDaemon({ home });
      // From the moment berthd has begun (its pid file, written before it binds the socket): a CLI
      // that raced ahead of even that, on a loaded machine, could not know a daemon was coming.
      while (!existsSync(join(home, 'berth.sock.pid'))) await new Promise((r) => setTimeout(r, 5));
      const out = await new Promise<{ code: number | null; text: string }>((resolve) => {
        const p = spawn(process.execPath, [BERTH_BIN, 'status', '--json'], { env: { PATH: process.env.PATH, HOME: home, BERTH_HOME: home } });
        let text = '';
        p.stdout.on('data', (c) => (text += c));
        p.stderr.on('data', (c) => (text += c));
        p.on('exit', (code) => resolve({ code, text }));
      });
      expect(out.text).not.toContain('DAEMON_UNREACHABLE');
      expect(out.code, out.text).toBe(0);
      expect(JSON.parse(out.text).pid).toBe(d.pid);
      expect(await d.stop()).toBe(0);
    } finally {
      await rm(home, { recursive: true, force: true });
    }
  });

  it('with no berthd starting, a client fails at once with DAEMON_UNREACHABLE: no socket; a stale socket and pid file of a killed berthd; a pid file naming a live process that is not berthd', async () => {
    const home = await tempDir();
    try {
      const sock = join(home, 'berth.sock');
      const none = waitingClient(sock);
      expect(await codeOf(none.daemon.status())).toBe('DAEMON_UNREACHABLE');
      none.close();

      const d = await startDaemon({ home });
      await d.stop('SIGKILL');
      const stale = waitingClient(sock);
      expect(await codeOf(stale.daemon.status())).toBe('DAEMON_UNREACHABLE');
      stale.close();

      const sleeper = spawn('sleep', ['600']);
      try {
        writeFileSync(`${sock}.pid`, `${sleeper.pid}\n`);
        const other = waitingClient(sock);
        expect(await codeOf(other.daemon.status())).toBe('DAEMON_UNREACHABLE');
        other.close();
      } finally {
        sleeper.kill('SIGKILL');
      }
    } finally {
      await rm(home, { recursive: true, force: true });
    }
  });

  it('a berthd that binds and then fails to start (invalid config) answers the waiting call with its error code, exits 78 and leaves no socket or pid file', async () => {
    const home = await tempDir();
    try {
      const d = spawnDaemon({ home, env: { AGENT_MEMORY_LIMIT: '1k' } });
      const c = waitingClient(d.socket);
      const code = await codeOf(c.daemon.status());
      c.close();
      // Either it was held and told why, or it arrived after the socket was gone (the daemon already exited).
      expect(['CONFIG_INVALID', 'DAEMON_UNREACHABLE']).toContain(code);
      expect(await d.waitExit()).toBe(78);
      expect(d.output).toContain('CONFIG_INVALID');
      expect(existsSync(d.socket)).toBe(false);
      expect(existsSync(`${d.socket}.pid`)).toBe(false);
    } finally {
      await rm(home, { recursive: true, force: true });
    }
  });
});
