import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BerthClient } from '@berth/client-sdk';
import { BerthError } from '@berth/client-sdk/protocol';
import { afterEach, describe, expect, it } from 'vitest';
import { SocketListener, pidFileOf, upgradeOf } from './listener.js';

const quiet = { warn: () => {} };

function post(socketPath: string, body: string): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, path: '/rpc', method: 'POST', agent: false, headers: { 'content-type': 'application/json' } }, (res) => {
      let text = '';
      res.on('data', (c) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

describe('SocketListener: the socket berthd binds before it loads', () => {
  const dirs: string[] = [];
  const dir = () => {
    const d = mkdtempSync(join(tmpdir(), 'bt-listen-'));
    dirs.push(d);
    return d;
  };
  afterEach(() => {
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });

  it('holds requests that arrive before the daemon attaches, then answers them in order, body intact', async () => {
    const sock = join(dir(), 'b.sock');
    const l = await SocketListener.open(sock, quiet);
    expect(statSync(sock).mode & 0o777).toBe(0o600);
    expect(Number((await import('node:fs')).readFileSync(pidFileOf(sock), 'utf8'))).toBe(process.pid);
    const seen: string[] = [];
    const answers = [post(sock, '{"n":1}'), post(sock, '{"n":2}')];
    // Both are connected and waiting: nothing answered them yet.
    const early = await Promise.race([Promise.all(answers).then(() => 'answered'), new Promise((r) => setTimeout(() => r('held'), 200))]);
    expect(early).toBe('held');
    l.attach((req, res) => {
      let b = '';
      req.on('data', (c) => (b += c));
      req.on('end', () => {
        seen.push(b);
        res.end(`echo ${b}`);
      });
    });
    expect((await Promise.all(answers)).map((a) => a.text)).toEqual(['echo {"n":1}', 'echo {"n":2}']);
    expect(seen).toEqual(['{"n":1}', '{"n":2}']);
    await l.close();
    expect(existsSync(sock)).toBe(false);
    expect(existsSync(pidFileOf(sock))).toBe(false);
  });

  it('a start that fails answers the held calls with its error (a JSON-RPC error the SDK turns into the code)', async () => {
    const sock = join(dir(), 'b.sock');
    const l = await SocketListener.open(sock, quiet);
    const client = new BerthClient({ socketPath: sock });
    const call = client.daemon.status().then(
      () => 'ok',
      (e: unknown) => (e instanceof BerthError ? e.code : String(e)),
    );
    const raw = post(sock, '{"jsonrpc":"2.0","id":7,"method":"daemon.status"}');
    await new Promise((r) => setTimeout(r, 100));
    l.fail(new BerthError('CONFIG_INVALID', 'invalid AGENT_MEMORY_LIMIT'));
    expect(await call).toBe('CONFIG_INVALID');
    const r = await raw;
    expect(r.status).toBe(503);
    expect(JSON.parse(r.text)).toMatchObject({ jsonrpc: '2.0', id: null, error: { data: { code: 'CONFIG_INVALID' } } });
    // Later calls get the same answer until the socket goes.
    expect(JSON.parse((await post(sock, '{}')).text).error.data.code).toBe('CONFIG_INVALID');
    client.close();
    await l.close();
    expect(existsSync(sock)).toBe(false);
  });

  it('refuses a path a live listener holds, and leaves that listener and its pid file alone', async () => {
    const sock = join(dir(), 'b.sock');
    const first = await SocketListener.open(sock, quiet);
    first.attach((_req, res) => res.end(JSON.stringify({ jsonrpc: '2.0', id: 1, result: { pid: 4242 } })));
    await expect(SocketListener.open(sock, quiet)).rejects.toMatchObject({ code: 'SOCKET_IN_USE' });
    expect(existsSync(pidFileOf(sock))).toBe(true);
    expect((await post(sock, '{}')).status).toBe(200);
    await first.close();
  });

  it('an upgrade request is held like any, reaches the handler as a request with its socket (upgradeOf), and an answer without upgrading closes it', async () => {
    const sock = join(dir(), 'b.sock');
    const l = await SocketListener.open(sock, quiet);
    const ask = (path: string) =>
      new Promise<{ upgraded: string } | { status: number; text: string }>((resolve, reject) => {
        const req = request({ socketPath: sock, path, method: 'GET', agent: false, headers: { connection: 'Upgrade', upgrade: 'berth-test' } });
        req.on('upgrade', (_res, socket, head) => {
          let t = head.toString();
          socket.on('data', (c: Buffer) => (t += c));
          socket.on('end', () => resolve({ upgraded: t }));
        });
        req.on('response', (res) => {
          let text = '';
          res.on('data', (c) => (text += c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
        });
        req.on('error', reject);
        req.end();
      });
    const taken = ask('/take');
    const refused = ask('/refuse');
    await new Promise((r) => setTimeout(r, 100));
    l.attach((req, res) => {
      const up = upgradeOf(req);
      expect(up).not.toBeNull();
      if (req.url === '/refuse') return void res.writeHead(404).end('no');
      res.detachSocket(up!.socket as never);
      up!.socket.end('HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: berth-test\r\n\r\nframes');
    });
    expect(await taken).toEqual({ upgraded: 'frames' });
    expect(await refused).toEqual({ status: 404, text: 'no' });
    // An ordinary request has no upgrade.
    l.attach((req, res) => res.end(String(upgradeOf(req))));
    expect((await post(sock, '{}')).text).toBe('null');
    await l.close();
  });
});
