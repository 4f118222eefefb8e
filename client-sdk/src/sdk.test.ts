import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { BerthClient, type ConnectionState } from './client.js';
import type { StreamedEvent } from './events.js';
import type { BerthError } from './protocol/index.js';

type Handler = (req: IncomingMessage, res: ServerResponse, body: string) => void;

/** A stand-in berthd on a Unix socket: `handle` answers; `sockets` are the server ends of its connections. */
async function fake(handle: Handler): Promise<{ socketPath: string; sockets: Set<Socket>; server: Server; close(): Promise<void> }> {
  const dir = mkdtempSync(join(tmpdir(), 'bt-sdk-'));
  const socketPath = join(dir, 's.sock');
  const sockets = new Set<Socket>();
  const server = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8').on('data', (c: string) => (body += c));
    req.on('end', () => handle(req, res, body));
  });
  server.keepAliveTimeout = 60_000;
  server.on('connection', (s: Socket) => (sockets.add(s), s.on('close', () => sockets.delete(s))));
  await new Promise<void>((r) => server.listen(socketPath, r));
  return {
    socketPath,
    sockets,
    server,
    async close() {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

const rpcAnswer = (res: ServerResponse, body: string, result: unknown) => {
  const { id } = JSON.parse(body) as { id: number };
  res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ jsonrpc: '2.0', id, result }));
};

const codeOf = (p: Promise<unknown>) => p.then(() => 'resolved', (e: BerthError) => e.code ?? String(e));

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function setup(handle: Handler, opts: ConstructorParameters<typeof BerthClient>[0] = {}) {
  const f = await fake(handle);
  const c = new BerthClient({ socketPath: f.socketPath, ...opts });
  cleanups.push(() => f.close(), () => c.close());
  return { f, c };
}

describe('the SDK transport', () => {
  it('a kept-alive connection berthd closed as the next call goes out: a read is sent again on a fresh connection, a write fails with CONNECTION_LOST (never INTERNAL_ERROR)', async () => {
    const methods: string[] = [];
    const { f, c } = await setup((_req, res, body) => {
      methods.push((JSON.parse(body) as { method: string }).method);
      rpcAnswer(res, body, { ok: true });
    });
    await c.daemon.status();
    expect(f.sockets.size).toBe(1);
    // The server end goes first, in this same turn: the client writes into a closed connection (EPIPE).
    for (const s of f.sockets) s.destroy();
    await expect(c.daemon.status()).resolves.toEqual({ ok: true });
    await c.daemon.status(); // a kept connection again (the retry's own was not kept)
    for (const s of f.sockets) s.destroy();
    const err = (await c.projects.add({ name: 'x', path: '/x' }).catch((e: unknown) => e)) as BerthError;
    expect(err.code).toBe('CONNECTION_LOST');
    expect(['EPIPE', 'ECONNRESET']).toContain(err.details?.errno);
    expect(methods).toEqual(['daemon.status', 'daemon.status', 'daemon.status']);
    // And the client goes on working.
    await expect(c.projects.list()).resolves.toEqual({ ok: true });
  });

  it('per call: ABORTED when its signal aborts, TIMEOUT past its timeoutMs, ABORTED for calls pending at close()', async () => {
    const { c } = await setup(() => {
      // never answers
    });
    const ctl = new AbortController();
    const pending = c.sessions.list({}, { signal: ctl.signal });
    setTimeout(() => ctl.abort(), 50);
    expect(await codeOf(pending)).toBe('ABORTED');
    expect(await codeOf(c.daemon.status(undefined, { signal: AbortSignal.abort() }))).toBe('ABORTED');
    expect(await codeOf(c.daemon.status({}, { timeoutMs: 100 }))).toBe('TIMEOUT');
    const atClose = c.agents.list();
    setTimeout(() => c.close(), 50);
    expect(await codeOf(atClose)).toBe('ABORTED');
  });

  it('sessions.iterate follows nextCursor through every page', async () => {
    const { c } = await setup((_req, res, body) => {
      const { cursor } = (JSON.parse(body) as { params: { cursor?: string } }).params;
      const page = Number(cursor ?? 0);
      rpcAnswer(res, body, { items: [{ id: `s${page}a` }, { id: `s${page}b` }], nextCursor: page < 2 ? String(page + 1) : null });
    });
    const ids: string[] = [];
    for await (const s of c.sessions.iterate({ limit: 2 })) ids.push(s.id);
    expect(ids).toEqual(['s0a', 's0b', 's1a', 's1b', 's2a', 's2b']);
  });
});

describe('the SDK events stream', () => {
  const hello = (epoch: string, seq: number, oldest = 1) => ({ type: 'hello', seq, oldest, epoch, ts: 't' });
  const ev = (seq: number) => ({ seq, ts: 't', type: 'image.removed', data: { name: `i${seq}` } });

  it('aborting ends the iteration: no throw', async () => {
    const { c } = await setup((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/x-ndjson' });
      res.write(`${JSON.stringify(hello('e1', 0))}\n`);
    });
    const ctl = new AbortController();
    const seen: StreamedEvent[] = [];
    const done = (async () => {
      for await (const e of c.events({ signal: ctl.signal })) seen.push(e);
      return 'ended';
    })();
    setTimeout(() => ctl.abort(), 100);
    await expect(done).resolves.toBe('ended');
    // Aborted before it starts, or by close(): the same.
    for await (const e of c.events({ signal: AbortSignal.abort() })) seen.push(e);
    expect(seen).toEqual([]);
  });

  it('reconnects and resumes after the last event: a repeat is dropped; another epoch comes with its gap; states reported', async () => {
    const asked: string[] = [];
    let n = 0;
    const { c } = await setup((req, res) => {
      asked.push(req.url!);
      const send = (...lines: unknown[]) => {
        if (!res.headersSent) res.writeHead(200, { 'content-type': 'application/x-ndjson' });
        res.write(lines.map((l) => `${JSON.stringify(l)}\n`).join(''));
      };
      n++;
      if (n === 1) {
        send(hello('e1', 2), ev(3), ev(4));
        setTimeout(() => res.socket?.destroy(), 50);
      } else if (n === 2) {
        // berthd replays from since (4) and adds one repeat as a stand-in for a race: dropped.
        send(hello('e1', 5), ev(4), ev(5));
        setTimeout(() => res.socket?.destroy(), 50);
      } else if (n === 3) {
        res.writeHead(503, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { code: 'DAEMON_UNREACHABLE', message: 'berthd is stopping' } }));
      } else {
        send(hello('e2', 1), { type: 'gap', seq: 0, ts: 't', data: { reason: 'restarted', since: 5, epoch: 'e2', previousEpoch: 'e1', oldest: 1 } }, ev(1));
      }
    });
    const states: ConnectionState[] = [];
    c.onConnectionChange((s) => states.push(s));
    const ctl = new AbortController();
    const got: string[] = [];
    for await (const e of c.events({ signal: ctl.signal, types: ['image.*'] })) {
      got.push(e.type === 'gap' ? `gap:${e.data.reason}` : `${e.seq}`);
      if (got.length === 5) ctl.abort();
    }
    expect(got).toEqual(['3', '4', '5', 'gap:restarted', '1']);
    expect(asked).toEqual(['/events?types=image.*', '/events?since=4&epoch=e1&types=image.*', '/events?since=5&epoch=e1&types=image.*', '/events?since=5&epoch=e1&types=image.*']);
    expect(states).toEqual(['connected', 'reconnecting', 'connected', 'reconnecting', 'connected']);
  }, 30_000);

  it('with reconnect false it ends with the stream; a refused filter is thrown with its code', async () => {
    const { c } = await setup((req, res) => {
      if (req.url!.includes('bad')) {
        res.writeHead(400, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { code: 'INVALID_PARAMS', message: 'unknown event type' } }));
        return;
      }
      res.writeHead(200).end(`${JSON.stringify(hello('e1', 0))}\n${JSON.stringify(ev(1))}\n`);
    });
    const seqs: number[] = [];
    for await (const e of c.events({ reconnect: false })) seqs.push(e.seq);
    expect(seqs).toEqual([1]);
    const it = c.events({ types: ['bad'] });
    expect(await codeOf(it.next())).toBe('INVALID_PARAMS');
  });
});
