import { mkdtempSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Fastify, { type FastifyInstance } from 'fastify';
import { BerthError } from '@berth/client-sdk/protocol';
import { afterEach, describe, expect, it } from 'vitest';
import { EventBus } from '../../events/bus.js';
import type { SessionService } from '../../sessions/service.js';
import { OpenStreams } from '../wire.js';
import { eventRoutes } from './events.js';

const session = (id: string, name: string, project: string) => ({ id, name, project }) as never;

/** The first `n` lines of GET `path` (then the connection is dropped), or the refusal. */
function firstLines(socketPath: string, path: string, n: number): Promise<{ status: number; lines: Record<string, unknown>[] }> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, path, agent: false }, (res) => {
      let buf = '';
      const lines: Record<string, unknown>[] = [];
      res.setEncoding('utf8').on('data', (c: string) => {
        buf += c;
        for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
          lines.push(JSON.parse(buf.slice(0, i)) as Record<string, unknown>);
          buf = buf.slice(i + 1);
        }
        if (res.statusCode === 200 && lines.length >= n) {
          req.destroy();
          resolve({ status: 200, lines: lines.slice(0, n) });
        }
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, lines: buf ? [JSON.parse(buf) as Record<string, unknown>] : lines }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('GET /events: hello, gaps and filters', () => {
  let app: FastifyInstance | null = null;
  let dir = '';
  afterEach(async () => {
    await app?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  async function serve(bus: EventBus): Promise<string> {
    dir = mkdtempSync(join(tmpdir(), 'bt-ev-'));
    const socketPath = join(dir, 's.sock');
    const streams = new OpenStreams();
    const sessions = {
      resolve: (ref: string) => {
        if (ref === 'web-1' || ref === 'aaaa00000001') return { id: 'aaaa00000001', project: 'web' };
        if (ref === 'ab') throw new BerthError('SESSION_AMBIGUOUS', 'two');
        throw new BerthError('SESSION_NOT_FOUND', 'none');
      },
    } as unknown as SessionService;
    app = Fastify();
    await app.register(eventRoutes, { bus, streams, heartbeatMs: 60_000, sessions });
    app.addHook('preClose', (done) => (streams.endAll(), done()));
    await app.listen({ path: socketPath });
    return socketPath;
  }

  function busWith(capacity: number): EventBus {
    const bus = new EventBus(capacity, () => new Date(0), 'e1');
    bus.publish('daemon.started', { version: 'x', pid: 1 });
    bus.publish('session.created', { session: session('aaaa00000001', 'web-1', 'web') });
    bus.publish('session.activity', { id: 'aaaa00000001', name: 'web-1', activity: { state: 'working' } as never, previous: null });
    bus.publish('session.created', { session: session('bbbb00000002', 'api-1', 'api') });
    return bus;
  }

  it('hello says seq, oldest and epoch; the same epoch replays after since without a gap', async () => {
    const s = await serve(busWith(10));
    const { lines } = await firstLines(s, '/events?since=2&epoch=e1', 3);
    expect(lines[0]).toMatchObject({ type: 'hello', seq: 4, oldest: 1, epoch: 'e1' });
    expect(lines.slice(1).map((l) => l.seq)).toEqual([3, 4]);
  });

  it('another epoch, or a since past the last seq: a restarted gap, then the whole buffer', async () => {
    const s = await serve(busWith(10));
    for (const q of ['since=9&epoch=e0', 'since=9']) {
      const { lines } = await firstLines(s, `/events?${q}`, 4);
      expect(lines[1]).toMatchObject({ type: 'gap', seq: 0, data: { reason: 'restarted', since: 9, epoch: 'e1', oldest: 1 } });
      expect(lines.slice(2).map((l) => l.seq)).toEqual([1, 2]);
    }
  });

  it('a since older than the buffer: an overflow gap at the last seq lost', async () => {
    const s = await serve(busWith(2));
    const { lines } = await firstLines(s, '/events?since=0&epoch=e1', 4);
    expect(lines[0]).toMatchObject({ type: 'hello', seq: 4, oldest: 3 });
    expect(lines[1]).toMatchObject({ type: 'gap', seq: 2, data: { reason: 'overflow', since: 0, oldest: 3 } });
    expect(lines.slice(2).map((l) => l.seq)).toEqual([3, 4]);
  });

  it('filters the replay: types, session by name, project; gap and hello pass', async () => {
    const s = await serve(busWith(10));
    const seqs = async (q: string, n: number) => (await firstLines(s, `/events?since=0&${q}`, n)).lines.slice(1).map((l) => l.seq);
    expect(await seqs('types=session.*', 4)).toEqual([2, 3, 4]);
    expect(await seqs('types=daemon.started,session.activity', 3)).toEqual([1, 3]);
    expect(await seqs('session=web-1', 3)).toEqual([2, 3]);
    expect(await seqs('project=api', 2)).toEqual([4]);
    expect((await firstLines(s, '/events?since=9&session=web-1', 4)).lines.map((l) => l.type)).toEqual(['hello', 'gap', 'session.created', 'session.activity']);
  });

  it('refuses what it cannot read with INVALID_PARAMS (400), an ambiguous session with its own code', async () => {
    const s = await serve(busWith(10));
    for (const q of ['types=session.nope', 'types=x.*', 'since=-1', 'since=abc', 'epoch=ZZ', 'project=Bad%20Name', 'session=a/b', 'since=1&since=2']) {
      const r = await firstLines(s, `/events?${q}`, 1);
      expect([q, r.status, r.lines[0]?.error]).toMatchObject([q, 400, { code: 'INVALID_PARAMS' }]);
    }
    const amb = await firstLines(s, '/events?session=ab', 1);
    expect([amb.status, (amb.lines[0]?.error as { code: string }).code]).toEqual([409, 'SESSION_AMBIGUOUS']);
  });
});
