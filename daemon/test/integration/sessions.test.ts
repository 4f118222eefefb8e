import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { BerthError, type BerthEvent, type Session } from '@berth/client-sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { networkName } from '../../src/runtime/labels.js';
import { docker } from '../helpers/docker.js';
import { TEST_UID, poll, sh, startWithProject, type DaemonProcess } from '../helpers/daemon.js';

const inspect = async (id: string) => JSON.parse(await docker('inspect', id))[0];
const codeOf = (p: Promise<unknown>) => p.then(() => 'ok', (e: unknown) => (e instanceof BerthError ? e.code : String(e)));

describe('sessions on the real engine', () => {
  let d: DaemonProcess;
  let repo: string;

  beforeAll(async () => {
    ({ d, repo } = await startWithProject());
    const c = d.client;
    await c.agents.define({ name: 'looper', command: sh('i=0; while true; do echo "tick $i"; echo "err $i" >&2; i=$((i+1)); sleep 0.2; done') });
    await c.agents.define({ name: 'reader', command: sh('sleep 3600'), readOnly: true });
    await c.agents.define({ name: 'done', command: sh('echo all done; exit 0') });
    await c.agents.define({ name: 'crasher', command: sh('echo boom; exit 3'), restartPolicy: 'never' });
  });
  afterAll(async () => {
    await d?.[Symbol.asyncDispose]();
  });

  it('runs a session through its whole lifecycle', async () => {
    const c = d.client;
    const events: BerthEvent[] = [];
    const ctl = new AbortController();
    const reading = (async () => {
      for await (const e of c.events({ signal: ctl.signal })) events.push(e);
    })().catch(() => {});

    const s = await c.sessions.start({ project: 'web', agent: 'looper' });
    expect(s).toMatchObject({ project: 'web', agent: 'looper', mode: 'write', desired: 'running', state: 'running', restartCount: 0 });
    expect(s.id).toMatch(/^[0-9a-f]{12}$/);
    expect(s.name).toMatch(/^web-\d+$/);
    // A name another berthd holds on the engine gets this one's instance suffix (CONTAINER_NAME_TAKEN).
    expect(s.containerName).toMatch(/^berth-web-\d+(-i[0-9a-f]{6}(-[0-9a-f]{4})?)?$/);
    const info = await inspect(s.containerId!);
    expect(info.State.Running).toBe(true);
    expect(info.Config.Labels).toMatchObject({ 'dev.berth.managed': 'true', 'dev.berth.session': s.id, 'dev.berth.project': 'web', 'dev.berth.agent': 'looper' });
    expect(info.Config.Labels['dev.berth.spec-hash']).toMatch(/^[0-9a-f]{16}$/);

    // Addressable by id, id prefix and name.
    expect((await c.sessions.get({ id: s.id.slice(0, 6) })).id).toBe(s.id);
    expect((await c.sessions.get({ id: s.name })).id).toBe(s.id);

    await poll(async () => (await c.sessions.logs({ id: s.id })).length >= 4, 10_000, 'log lines');
    const logs = await c.sessions.logs({ id: s.id, tail: 4 });
    expect(logs).toHaveLength(4);
    expect(logs.map((l) => l.stream).sort()).toEqual(['stderr', 'stderr', 'stdout', 'stdout']);
    expect(logs.find((l) => l.stream === 'stdout')!.line).toMatch(/^tick \d+$/);
    expect(Date.parse(logs[0]!.ts)).toBeGreaterThan(Date.parse(s.createdAt) - 5000);

    const ex = await c.sessions.exec({ id: s.id, cmd: sh('id -u; pwd; echo oops >&2; exit 7') });
    expect(ex).toEqual({ exitCode: 7, stdout: `${TEST_UID}\n/workspace\n`, stderr: 'oops\n' });

    // /agent survives a restart, which gives a fresh container.
    expect((await c.sessions.exec({ id: s.id, cmd: sh('echo kept > /agent/note') })).exitCode).toBe(0);
    const r = await c.sessions.restart({ id: s.id });
    expect(r.state).toBe('running');
    expect(r.containerId).not.toBe(s.containerId);
    expect((await c.sessions.exec({ id: s.id, cmd: ['cat', '/agent/note'] })).stdout).toBe('kept\n');

    const stopped = await c.sessions.stop({ id: s.id, timeoutSec: 5 });
    expect(stopped).toMatchObject({ desired: 'stopped', state: 'stopped' });
    expect((await inspect(r.containerId!)).State.Running).toBe(false);
    expect(await codeOf(c.sessions.exec({ id: s.id, cmd: ['true'] }))).toBe('SESSION_NOT_RUNNING');

    expect(await c.sessions.remove({ id: s.name })).toMatchObject({ removed: s.id, name: s.name, kept: {} });
    await expect(docker('inspect', r.containerId!)).rejects.toThrow();
    await expect(docker('volume', 'inspect', `berth-agent-${s.id}`)).rejects.toThrow();
    expect(await codeOf(c.sessions.get({ id: s.id }))).toBe('SESSION_NOT_FOUND');

    ctl.abort();
    await reading;
    const mine = events.filter((e) => ('session' in e.data ? e.data.session.id : (e.data as { id?: string }).id) === s.id);
    expect(mine[0]!.type).toBe('session.created');
    expect(mine.at(-1)!.type).toBe('session.removed');
    const states = mine.filter((e) => e.type === 'session.state').map((e) => (e.data as { session: Session }).session.state);
    expect(states).toEqual(expect.arrayContaining(['creating', 'running', 'stopping', 'stopped']));
  });

  it('an agent that finishes with 0 is not restarted under on-failure', async () => {
    const s = await d.client.sessions.start({ project: 'web', agent: 'done' });
    const done = await poll(async () => {
      const x = await d.client.sessions.get({ id: s.id });
      return x.state === 'exited' ? x : null;
    });
    expect(done).toMatchObject({ exitCode: 0, restartCount: 0, nextRestartAt: null });
    expect((await d.client.sessions.logs({ id: s.id })).map((l) => l.line)).toEqual(['all done']);
  });

  it('restart policy never leaves a crashed agent exited', async () => {
    const s = await d.client.sessions.start({ project: 'web', agent: 'crasher' });
    const x = await poll(async () => {
      const y = await d.client.sessions.get({ id: s.id });
      return y.state === 'exited' ? y : null;
    });
    expect(x).toMatchObject({ exitCode: 3, restartCount: 0, nextRestartAt: null });
  });

  it('on-failure schedules a restart with backoff for a crash', async () => {
    const s = await d.client.sessions.start({ project: 'web', agent: 'crasher', restartPolicy: 'on-failure' });
    const x = await poll(async () => {
      const y = await d.client.sessions.get({ id: s.id });
      return y.state === 'exited' && y.nextRestartAt ? y : null;
    });
    const delay = Date.parse(x.nextRestartAt!) - Date.parse(x.finishedAt!);
    expect(delay).toBeGreaterThan(8_000);
    expect(delay).toBeLessThan(13_000);
  });

  it('shows hardening and limits in docker inspect', async () => {
    await d.client.agents.define({
      name: 'limited',
      command: sh('sleep 3600'),
      limits: { memory: '256m', cpus: 0.5, pids: 64 },
      readOnlyRootfs: true,
    });
    const s = await d.client.sessions.start({ project: 'web', agent: 'limited' });
    const i = await inspect(s.containerId!);
    const h = i.HostConfig;
    expect(h.Privileged).toBe(false);
    expect(h.CapDrop).toEqual(['ALL']);
    expect(h.CapAdd ?? []).toEqual([]);
    expect(h.SecurityOpt).toEqual(['no-new-privileges:true']);
    expect(h.Memory).toBe(256 * 1024 * 1024);
    expect(h.MemorySwap).toBe(256 * 1024 * 1024);
    expect(h.NanoCpus).toBe(500_000_000);
    expect(h.PidsLimit).toBe(64);
    expect(h.Init).toBe(true);
    expect(h.RestartPolicy.Name).toBe('no');
    expect(h.LogConfig).toEqual({ Type: 'json-file', Config: { 'max-file': '2', 'max-size': '65536k' } });
    expect(h.ReadonlyRootfs).toBe(true);
    expect(Object.keys(h.Tmpfs)).toEqual(['/tmp']);
    expect(h.NetworkMode).toBe(networkName('web', false, d.instanceId!));
    expect(i.Config.User).toBe(`${TEST_UID}:${TEST_UID}`);
    const mounts = Object.fromEntries(i.Mounts.map((m: { Destination: string; RW: boolean; Source: string; Type: string; Name?: string }) => [m.Destination, m]));
    expect(mounts['/workspace']).toMatchObject({ Type: 'bind', RW: true, Source: s.checkout!.dir });
    expect(s.checkout!.dir).toBe(join(d.home, 'checkouts', 'web', s.name));
    expect(mounts[join(repo, '.git', 'objects')]).toMatchObject({ Type: 'bind', RW: false });
    expect(Object.keys(mounts).sort()).toEqual(['/agent', '/host', '/shared', '/workspace', join(repo, '.git', 'objects')].sort());
    // The Claude bridge: its own directory, read-only, holding only its socket.
    expect(mounts['/host']).toMatchObject({ Type: 'bind', RW: false, Source: join(d.home, 'bridge', 'sessions', s.id) });
    expect(mounts['/shared']).toMatchObject({ Type: 'bind', RW: false, Source: join(d.home, 'shared') });
    expect(mounts['/agent']).toMatchObject({ Type: 'volume', RW: true, Name: `berth-agent-${s.id}` });
    expect(mounts['/var/run/docker.sock']).toBeUndefined();
    // Nothing from the host's environment got in.
    const env: string[] = i.Config.Env;
    expect(env.some((e) => e.startsWith('BERTH_HOME=') || e.startsWith('PROJECTS_ROOT='))).toBe(false);
    // The read-only root really is read-only; /tmp is writable.
    expect((await d.client.sessions.exec({ id: s.id, cmd: sh('touch /etc/x') })).exitCode).not.toBe(0);
    expect((await d.client.sessions.exec({ id: s.id, cmd: sh('touch /tmp/x') })).exitCode).toBe(0);
    await d.client.sessions.remove({ id: s.id });
  });

  it('a read session sees the project read-only; a write session writes files the project owner owns', async () => {
    const r = await d.client.sessions.start({ project: 'web', agent: 'reader' });
    expect(r.mode).toBe('read');
    expect((await d.client.sessions.exec({ id: r.id, cmd: sh('touch /workspace/x') })).exitCode).not.toBe(0);
    expect((await inspect(r.containerId!)).Mounts.find((m: { Destination: string }) => m.Destination === '/workspace').RW).toBe(false);
    await d.client.sessions.remove({ id: r.id });

    const w = await d.client.sessions.start({ project: 'web', agent: 'reader', mode: 'write' });
    expect((await d.client.sessions.exec({ id: w.id, cmd: sh('echo hi > /workspace/made-by-agent') })).exitCode).toBe(0);
    const { stat } = await import('node:fs/promises');
    const st = await stat(join(w.checkout!.dir, 'made-by-agent'));
    expect([st.uid, st.gid]).toEqual([TEST_UID, TEST_UID]);
    expect(await readFile(join(w.checkout!.dir, 'made-by-agent'), 'utf8')).toBe('hi\n');
    await d.client.sessions.remove({ id: w.id, force: true });
  });

  it('lists with filters and pagination', async () => {
    const all: Session[] = [];
    let cursor: string | undefined;
    do {
      const page = await d.client.sessions.list({ limit: 2, ...(cursor ? { cursor } : {}) });
      expect(page.items.length).toBeLessThanOrEqual(2);
      all.push(...page.items);
      cursor = page.nextCursor ?? undefined;
    } while (cursor);
    const full = (await d.client.sessions.list({ limit: 1000 })).items;
    expect(all.map((s) => s.id)).toEqual(full.map((s) => s.id));
    expect(new Set(all.map((s) => s.id)).size).toBe(all.length);
    const exited = (await d.client.sessions.list({ state: 'exited' })).items;
    expect(exited.length).toBeGreaterThan(0);
    expect(exited.every((s) => s.state === 'exited')).toBe(true);
    expect((await d.client.sessions.list({ project: 'nope' })).items).toEqual([]);
    expect(await codeOf(d.client.sessions.list({ cursor: 'garbage' }))).toBe('INVALID_PARAMS');
  });

  it('refuses what it cannot do, clearly', async () => {
    const c = d.client;
    expect(await codeOf(c.sessions.start({ project: 'nope', agent: 'looper' }))).toBe('PROJECT_NOT_FOUND');
    expect(await codeOf(c.sessions.start({ project: 'web', agent: 'nope' }))).toBe('AGENT_NOT_FOUND');
    expect(await codeOf(c.sessions.start({ project: 'web', agent: 'looper', name: 'Bad Name' }))).toBe('INVALID_NAME');
    expect(await codeOf(c.sessions.get({ id: 'ffffffffffff' }))).toBe('SESSION_NOT_FOUND');
    expect(await codeOf(c.projects.remove({ name: 'web' }))).toBe('PROJECT_HAS_SESSIONS');
    expect(await codeOf(c.agents.remove({ name: 'done' }))).toBe('AGENT_IN_USE');
    // Both name the sessions in the way (up to 10, in details too).
    const all = (await c.sessions.list({ limit: 500 })).items;
    for (const [err, mine] of [
      [await c.projects.remove({ name: 'web' }).catch((e: unknown) => e), all.filter((s) => s.project === 'web')],
      [await c.agents.remove({ name: 'done' }).catch((e: unknown) => e), all.filter((s) => s.agent === 'done')],
    ] as const) {
      const names = (err as BerthError).details?.names as string[];
      expect(names).toHaveLength(Math.min(10, mine.length));
      for (const n of names) expect(mine.map((s) => s.name)).toContain(n);
      for (const n of names) expect((err as BerthError).message).toContain(n);
    }
  });
});
