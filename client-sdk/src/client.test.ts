import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { BerthClient } from './client.js';
import { methodNames } from './protocol/index.js';

describe('BerthClient', () => {
  it('has one typed method for every RPC method of the protocol', () => {
    const c = new BerthClient({ socketPath: '/nonexistent.sock' });
    const missing = methodNames.filter((m) => {
      const [ns, fn] = m.split('.') as [string, string];
      return typeof (c as unknown as Record<string, Record<string, unknown>>)[ns]?.[fn] !== 'function';
    });
    c.close();
    expect(missing).toEqual([]);
  });

  it('turns a missing daemon into DAEMON_UNREACHABLE', async () => {
    const c = new BerthClient({ socketPath: '/nonexistent/berth.sock' });
    await expect(c.daemon.status()).rejects.toMatchObject({ code: 'DAEMON_UNREACHABLE' });
    c.close();
  });

  it('keeps a stream whose server is quiet for longer than a keep-alive idle timeout', async () => {
    // A build step can print nothing for minutes; Node's global agent drops sockets idle for 5 s.
    const dir = mkdtempSync(join(tmpdir(), 'bt-client-'));
    const socketPath = join(dir, 's.sock');
    const server = createServer((req, res) => {
      req.resume();
      res.writeHead(200, { 'content-type': 'application/x-ndjson' });
      res.write(`${JSON.stringify({ progress: { name: 'x', step: 1, total: 2, line: 'Step 1/2' } })}\n`);
      setTimeout(() => res.end(`${JSON.stringify({ result: { name: 'x', status: 'built' } })}\n`), 6500);
    });
    await new Promise<void>((r) => server.listen(socketPath, r));
    const c = new BerthClient({ socketPath });
    try {
      const lines: string[] = [];
      const result = await c.buildImage({ name: 'x', context: '/nowhere' } as never, (p) => lines.push(p.line));
      expect(result).toMatchObject({ status: 'built' });
      expect(lines).toEqual(['Step 1/2']);
    } finally {
      c.close();
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
      rmSync(dir, { recursive: true, force: true });
    }
  }, 30_000);
});
