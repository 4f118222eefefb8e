import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BerthClient } from '@berth/client-sdk';
import { BerthError } from '@berth/client-sdk/protocol';
import { afterEach, describe, expect, it } from 'vitest';
import { SocketListener, pidFileOf } from './listener.js';

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
});
