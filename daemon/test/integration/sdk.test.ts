import { rm } from 'node:fs/promises';
import { connect, createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { BerthClient, type BerthError, type ConnectionState, type StreamedEvent } from '@berth/client-sdk';
import { afterEach, describe, expect, it } from 'vitest';
import { docker } from '../helpers/docker.js';
import { getJson, makeRepo, poll, sh, spawnDaemon, startWithProject, tempDir, type DaemonProcess } from '../helpers/daemon.js';

/**
 * The SDK an editor plugin leans on, against a real berthd on the real engine: events that end
 * cleanly on abort and resume across kill -9 of berthd, waitFor across one, the retry of a read on
 * a kept-alive connection berthd closed, and the stream's filters.
 */

const cleanups: (() => Promise<unknown> | unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** A daemon with project `web`, disposed after the test (the last one, after restarts: see `restart`). */
async function daemon(): Promise<{ get: () => DaemonProcess; restart: () => Promise<void> }> {
  let { d } = await startWithProject();
  cleanups.push(() => d[Symbol.asyncDispose]());
  return {
    get: () => d,
    /** kill -9, then a new berthd on the same home (and socket). */
    async restart() {
      d.proc.kill('SIGKILL');
      await d.waitExit();
      d = spawnDaemon({ home: d.home, ownsHome: true });
      await d.waitReady(60_000);
    },
  };
}

function client(socketPath: string): BerthClient {
  const c = new BerthClient({ socketPath, timeoutMs: 60_000 });
  cleanups.push(() => c.close());
  return c;
}

/** Every item of `events()` into an array until the returned stop() (which resolves once the loop ended). */
function collect(c: BerthClient, opts: Parameters<BerthClient['events']>[0] = {}) {
  const seen: StreamedEvent[] = [];
  const ctl = new AbortController();
  const done = (async () => {
    for await (const e of c.events({ ...opts, signal: ctl.signal })) seen.push(e);
    return 'ended' as const;
  })();
  const stop = async () => {
    ctl.abort();
    return done;
  };
  cleanups.push(() => stop().catch(() => {}));
  return { seen, stop, done };
}

const codeOf = (p: Promise<unknown>) => p.then(() => 'resolved', (e: BerthError) => e.code ?? String(e));

describe('SDK events', () => {
  it('aborting ends the iteration: the loop returns, nothing is thrown', async () => {
    const { get } = await daemon();
    const c = client(get().socket);
    const r = collect(c);
    await c.agents.define({ name: 'one', command: sh('true') });
    await poll(async () => r.seen.some((e) => e.type === 'agent.defined'), 20_000, 'agent.defined');
    await expect(r.stop()).resolves.toBe('ended');
    // close() ends an iteration the same way.
    const again = collect(c);
    await poll(async () => c.connectionState === 'connected', 20_000, 'connected');
    c.close();
    await expect(again.done).resolves.toBe('ended');
  });

  it('resumes across kill -9 of berthd: every event of each daemon once, in order, with a gap where the daemon changed', async () => {
    const x = await daemon();
    const c = client(x.get().socket);
    const states: ConnectionState[] = [];
    c.onConnectionChange((s) => states.push(s));
    const r = collect(c);
    await poll(async () => c.connectionState === 'connected', 20_000, 'the stream');
    await c.agents.define({ name: 'before-1', command: sh('true') });
    await c.agents.define({ name: 'before-2', command: sh('true') });
    await poll(async () => r.seen.filter((e) => e.type === 'agent.defined').length === 2, 20_000, 'the events before');

    await x.restart();
    await c.agents.define({ name: 'after-1', command: sh('true') });
    await poll(async () => r.seen.some((e) => e.type === 'agent.defined' && e.data.agent.name === 'after-1'), 60_000, 'the event after');
    // The new daemon announces itself once it is done starting, maybe after after-1.
    await poll(async () => r.seen.some((e) => e.type === 'daemon.started'), 60_000, 'the new daemon.started');
    await r.stop();

    const gaps = r.seen.filter((e) => e.type === 'gap');
    expect(gaps).toHaveLength(1);
    const gap = gaps[0]!;
    expect(gap.type === 'gap' && gap.data.reason).toBe('restarted');
    const at = r.seen.indexOf(gap);
    const before = r.seen.slice(0, at);
    const after = r.seen.slice(at + 1);
    const names = (list: StreamedEvent[]) => list.flatMap((e) => (e.type === 'agent.defined' ? [e.data.agent.name] : []));
    expect(names(before)).toEqual(['before-1', 'before-2']);
    expect(names(after)).toEqual(['after-1']);
    for (const part of [before, after]) {
      const seqs = part.map((e) => e.seq);
      expect(seqs).toEqual([...new Set(seqs)].sort((a, b) => a - b));
    }
    // No loss: after the gap comes everything the new daemon published up to after-1, in its order.
    const last = after.find((e) => e.type === 'agent.defined')!.seq;
    const buffered: number[] = [];
    for await (const e of c.events({ since: 0, reconnect: false, signal: AbortSignal.timeout(5000) })) {
      if (e.seq <= last) buffered.push(e.seq);
      if (e.seq >= last) break;
    }
    expect(after.filter((e) => e.seq <= last).map((e) => e.seq)).toEqual(buffered);
    expect(before.some((e) => e.type === 'daemon.started')).toBe(false);
    expect(states.slice(0, 3)).toEqual(['connected', 'reconnecting', 'connected']);
  });

  it('filters in berthd: types with a prefix, one project, one session by name; a bad filter is refused with INVALID_PARAMS (400)', async () => {
    const { get } = await daemon();
    const d = get();
    const c = client(d.socket);
    await makeRepo(join(d.home, 'projects', 'api'));
    await c.projects.add({ name: 'api', path: join(d.home, 'projects', 'api') });
    await c.agents.define({ name: 'done', command: sh('echo done'), restartPolicy: 'never' });
    const all = collect(c);
    const web = collect(c, { types: ['session.*'], project: 'web' });
    const named = collect(c, { session: 'api-solo' });
    await poll(async () => c.connectionState === 'connected', 20_000, 'the streams');
    const a = await c.sessions.start({ project: 'web', agent: 'done' });
    const b = await c.sessions.start({ project: 'api', agent: 'done', name: 'api-solo' });
    await c.waitFor(a.id, 'exited', { timeoutMs: 120_000 });
    await c.waitFor(b.id, 'exited', { timeoutMs: 120_000 });
    await poll(async () => named.seen.some((e) => e.type === 'session.state' && e.data.session.state === 'exited'), 20_000, 'the named session exited');
    await poll(async () => web.seen.some((e) => e.type === 'session.state' && e.data.session.state === 'exited'), 20_000, 'the web session exited');
    await Promise.all([all.stop(), web.stop(), named.stop()]);

    const about = (e: StreamedEvent) =>
      e.type === 'session.created' || e.type === 'session.state' ? e.data.session.id : 'id' in (e.data as object) ? (e.data as { id: string }).id : null;
    expect(all.seen.some((e) => about(e) === b.id)).toBe(true);
    expect(web.seen.length).toBeGreaterThan(0);
    expect(web.seen.every((e) => e.type.startsWith('session.') && about(e) === a.id)).toBe(true);
    expect(named.seen.length).toBeGreaterThan(0);
    expect(named.seen.every((e) => about(e) === b.id || (e.type === 'notification' && e.data.session.id === b.id))).toBe(true);

    expect(await codeOf(c.events({ types: ['session.nope'] }).next())).toBe('INVALID_PARAMS');
    const refused = await getJson(d.socket, '/events?types=nope.*');
    expect(refused).toMatchObject({ status: 400, body: { error: { code: 'INVALID_PARAMS' } } });
    expect((await getJson(d.socket, '/events?since=-1')).status).toBe(400);
  });
});

describe('SDK waitFor', () => {
  it('resolves on exited when the agent exits while berthd is down (kill -9) and a new berthd comes up', async () => {
    const x = await daemon();
    const c = client(x.get().socket);
    await c.agents.define({ name: 'brief', command: sh('sleep 10; echo done'), restartPolicy: 'never' });
    const s = await c.sessions.start({ project: 'web', agent: 'brief' });
    const waiting = c.waitFor(s.name, 'exited', { timeoutMs: 300_000 });
    await poll(async () => c.connectionState === 'connected', 20_000, 'the wait to subscribe');
    x.get().proc.kill('SIGKILL');
    await x.get().waitExit();
    await poll(async () => (await docker('inspect', '-f', '{{.State.Running}}', s.containerId!)) === 'false', 60_000, 'the agent to exit');
    await x.restart();
    const done = await waiting;
    expect(done).toMatchObject({ id: s.id, state: 'exited', exitCode: 0 });

    // What never comes: TIMEOUT; a cancelled wait: ABORTED; no such session: SESSION_NOT_FOUND.
    expect(await codeOf(c.waitFor(s.id, 'failed', { timeoutMs: 1000 }))).toBe('TIMEOUT');
    expect(await codeOf(c.waitFor(s.id, (v) => v.restartCount > 5, { signal: AbortSignal.timeout(1000) }))).toBe('ABORTED');
    expect(await codeOf(c.waitFor('nosuchsession', 'running', { timeoutMs: 60_000 }))).toBe('SESSION_NOT_FOUND');
    // Already there: at once.
    expect((await c.waitFor(s.id, ['exited', 'failed'])).state).toBe('exited');
  });
});

/**
 * A stand-in for berthd closing a kept-alive connection as the client reuses it (its 60 s idle
 * timeout, or a restart): a proxy to the real berthd whose drop() closes every connection at once,
 * in the same turn as the next call goes out, so the client writes into a closed socket (EPIPE).
 */
async function dropProxy(target: string) {
  const dir = await tempDir('bt-px-');
  const path = join(dir, 'p.sock');
  const pairs = new Set<[Socket, Socket]>();
  const server = createServer((inbound) => {
    const outbound = connect(target);
    const pair: [Socket, Socket] = [inbound, outbound];
    pairs.add(pair);
    inbound.pipe(outbound).pipe(inbound);
    const end = () => (inbound.destroy(), outbound.destroy(), pairs.delete(pair));
    inbound.on('error', end).on('close', end);
    outbound.on('error', end).on('close', end);
  });
  await new Promise<void>((r) => server.listen(path, r));
  cleanups.push(async () => {
    for (const [a, b] of pairs) a.destroy(), b.destroy();
    await new Promise((r) => server.close(r));
    await rm(dir, { recursive: true, force: true });
  });
  return {
    path,
    get open() {
      return pairs.size;
    },
    drop() {
      for (const [a, b] of pairs) a.destroy(), b.destroy();
    },
  };
}

describe('SDK transport', () => {
  it('a kept-alive connection closed under the next call: a read is sent again and answers; a write fails with CONNECTION_LOST, not INTERNAL_ERROR', async () => {
    const { get } = await daemon();
    const proxy = await dropProxy(get().socket);
    const c = client(proxy.path);
    await c.daemon.status();
    expect(proxy.open).toBe(1);
    proxy.drop();
    expect((await c.projects.list()).map((p) => p.name)).toEqual(['web']);

    await c.sessions.list(); // a kept connection again
    proxy.drop();
    const err = (await c.agents.define({ name: 'late', command: sh('true') }).catch((e: unknown) => e)) as BerthError;
    expect(err.code).toBe('CONNECTION_LOST');
    expect(err.hint).not.toMatch(/bug in berthd/);
    // The client goes on.
    expect((await c.daemon.status()).pid).toBe(get().pid);
  });
});
