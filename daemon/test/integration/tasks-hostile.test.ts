import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BerthError, type BerthEvent, type Task } from '@berth/client-sdk/protocol';
import { makeRepo, poll, rawRpc, startWithProject, type DaemonProcess } from '../helpers/daemon.js';
import { collectEvents } from '../helpers/bridge-daemon.js';

/** Debian with Node 20 (scripts/build-offline-base.sh): node in the container is the agent's HTTP client. */
const NODE_IMAGE = 'berth-offline-base:bookworm';

/**
 * In the container: the JSON list on stdin, each entry a raw body (string) or a JSON-RPC call
 * ({method, params}), posted one after the other to the bridge's /rpc; prints the answers as JSON.
 * Bodies go through stdin, not argv, so one may be megabytes.
 */
const CLIENT = `
const http = require('node:http');
const post = (body) => new Promise((resolve) => {
  const req = http.request({ socketPath: process.env.CLAUDE_BRIDGE_SOCKET, path: '/rpc', method: 'POST', headers: { 'content-type': 'application/json' } }, (res) => {
    const c = []; res.on('data', (d) => c.push(d));
    res.on('end', () => { const text = Buffer.concat(c).toString(); let body = null; try { body = JSON.parse(text); } catch {} resolve({ status: res.statusCode, body, text: body ? undefined : text.slice(0, 300) }); });
  });
  req.on('error', (e) => resolve({ status: 0, error: e.code || e.message }));
  req.end(body);
});
let input = '';
process.stdin.setEncoding('utf8').on('data', (d) => (input += d)).on('end', async () => {
  const out = [];
  for (const c of JSON.parse(input)) out.push(await post(typeof c === 'string' ? c : JSON.stringify({ jsonrpc: '2.0', id: out.length + 1, ...c })));
  console.log(JSON.stringify(out));
});
`;

/**
 * In the container: claim and complete until nothing is claimable for a while (dependencies may
 * still be worked on by others); prints the ids it was given, in order.
 */
const WORKER = `
const http = require('node:http');
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
const call = (method, params) => new Promise((resolve, reject) => {
  const req = http.request({ socketPath: process.env.CLAUDE_BRIDGE_SOCKET, path: '/rpc', method: 'POST', agent, headers: { 'content-type': 'application/json' } }, (res) => {
    const c = []; res.on('data', (d) => c.push(d)); res.on('end', () => { const a = JSON.parse(Buffer.concat(c).toString()); a.error ? reject(new Error(JSON.stringify(a.error))) : resolve(a.result); });
  });
  req.on('error', reject);
  req.end(JSON.stringify({ jsonrpc: '2.0', id: 1, method, params }));
});
(async () => {
  const got = [];
  for (let idle = 0; idle < 40; ) {
    const { task } = await call('tasks.claim', {});
    if (!task) { idle++; await new Promise((r) => setTimeout(r, 100)); continue; }
    idle = 0;
    got.push(task.id);
    await call('tasks.complete', { summary: 'done by ' + process.env.HOSTNAME });
  }
  console.log(JSON.stringify(got));
})().catch((e) => { console.log(JSON.stringify({ error: e.message })); process.exit(1); });
`;

interface Answer {
  status: number;
  body: { id: unknown; result?: { task: Task | null }; error?: { code: number; message: string; data?: { code: string } } } | null;
  text?: string;
  error?: string;
}

/** Runs `script` with node in the container, `stdin` written to it; resolves with its stdout. */
function exec(container: string, script: string, stdin = ''): Promise<string> {
  return new Promise((resolve, reject) => {
    const p = spawn('docker', ['exec', '-i', container, 'node', '-e', script]);
    let out = '';
    let err = '';
    p.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    p.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    p.on('error', reject);
    p.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`docker exec exited ${code}: ${err}${out}`))));
    p.stdin.end(stdin);
  });
}

/** Calls on the session's own bridge, from inside its container, in order. */
async function bridge(container: string, calls: (string | { method: string; params?: unknown })[]): Promise<Answer[]> {
  const out = await exec(container, CLIENT, JSON.stringify(calls));
  return JSON.parse(out.trim().split('\n').at(-1)!) as Answer[];
}

/** The string code of a JSON-RPC error answer (data.code), or 'ok' for a result. */
/** A task without what an agent's bridge traffic moves on its own (the lease, updatedAt). */
const stable = (t: Task) => ({ ...t, updatedAt: null, claim: t.claim && { ...t.claim, leaseUntil: null } });

const code = (a: Answer) => (a.body?.error ? (a.body.error.data?.code ?? `no data (${a.body.error.code})`) : a.body ? 'ok' : `HTTP ${a.status} ${a.text ?? a.error}`);

describe('tasks: hostile agents on their bridges (real engine, real daemon)', () => {
  let d: DaemonProcess;
  const events: BerthEvent[] = [];
  let follow = { stop: () => {} };
  let projects = 0;

  /** A project of its own for each test, so no test claims another's tasks. */
  async function project(): Promise<string> {
    const name = `p${++projects}`;
    await d.client.projects.add({ name, path: await makeRepo(join(d.home, 'projects', name)) });
    return name;
  }

  /** A running session of the node agent in `proj`; its container id. */
  async function session(proj: string): Promise<{ id: string; name: string; container: string }> {
    const s = await d.client.sessions.start({ project: proj, agent: 'coder' });
    const running = await poll(async () => {
      const x = await d.client.sessions.get({ id: s.id });
      return x.state === 'running' && x.containerId ? x : null;
    }, 120_000, `session ${s.name} running`);
    return { id: s.id, name: s.name, container: running.containerId! };
  }

  const tasksOf = async (proj: string) => (await d.client.tasks.list({ project: proj, limit: 1000 })).items;

  beforeAll(async () => {
    // Leases are swept every BERTH_ACTIVITY_CHECK_SEC: every second here, so a lease of 10 s is
    // taken back soon after it runs out.
    ({ d } = await startWithProject({ env: { BERTH_ACTIVITY_CHECK_SEC: '1' } }));
    await d.client.agents.define({ name: 'coder', image: NODE_IMAGE, command: ['node', '-e', 'setInterval(() => {}, 1 << 30)'], network: 'none', readOnly: true });
    follow = collectEvents(d, events);
  }, 180_000);

  afterAll(async () => {
    follow.stop();
    await d?.[Symbol.asyncDispose]();
  });

  it('refuses to complete, heartbeat, fail or release a task the session does not hold, and a review from a non-reviewer', async () => {
    const proj = await project();
    const t = await d.client.tasks.add({ project: proj, title: 'held by a' });
    const [a, b] = await Promise.all([session(proj), session(proj)]);
    const nothing = await bridge(b.container, [
      { method: 'tasks.complete', params: { summary: 'I did it' } },
      { method: 'tasks.heartbeat', params: {} },
      { method: 'tasks.fail', params: { reason: 'no' } },
      { method: 'tasks.release', params: {} },
      { method: 'tasks.review', params: { decision: 'approve' } },
    ]);
    expect(nothing.map(code)).toEqual(['TASK_NOT_HELD', 'TASK_NOT_HELD', 'TASK_NOT_HELD', 'TASK_NOT_HELD', 'TASK_NOT_REVIEWING']);

    const [claimed] = await bridge(a.container, [{ method: 'tasks.claim', params: {} }]);
    expect(claimed!.body?.result?.task).toMatchObject({ id: t.id, state: 'claimed', claim: { session: a.id } });
    const before = await d.client.tasks.get({ id: t.id });

    // b holds nothing: it reaches a's task by no call, and b's own claim finds nothing open.
    const tries = await bridge(b.container, [
      { method: 'tasks.complete', params: { summary: 'stolen' } },
      { method: 'tasks.fail', params: { reason: 'sabotage' } },
      { method: 'tasks.release', params: {} },
      { method: 'tasks.heartbeat', params: { leaseSec: 86400 } },
      { method: 'tasks.review', params: { decision: 'changes', notes: 'redo' } },
      { method: 'tasks.claim', params: {} },
    ]);
    expect(tries.map(code)).toEqual(['TASK_NOT_HELD', 'TASK_NOT_HELD', 'TASK_NOT_HELD', 'TASK_NOT_HELD', 'TASK_NOT_REVIEWING', 'ok']);
    expect(tries[5]!.body?.result?.task).toBeNull();
    expect(await d.client.tasks.get({ id: t.id })).toEqual(before);
    expect(events.filter((e) => e.type.startsWith('task.') && 'session' in e.data && e.data.session?.id === b.id)).toEqual([]);
  }, 300_000);

  it('refuses params that name another task or session, unknown methods and malformed JSON, changing nothing', async () => {
    const proj = await project();
    const [t1, t2] = [await d.client.tasks.add({ project: proj, title: 'one' }), await d.client.tasks.add({ project: proj, title: 'two' })];
    const a = await session(proj);
    const other = await session(proj);
    const [claimed] = await bridge(a.container, [{ method: 'tasks.claim', params: {} }]);
    expect(claimed!.body?.result?.task?.id).toBe(t1.id);
    const before = await tasksOf(proj);

    const answers = await bridge(a.container, [
      { method: 'tasks.complete', params: { summary: 'x', id: t2.id } },
      { method: 'tasks.claim', params: { id: t2.id } },
      { method: 'tasks.claim', params: { session: other.id } },
      { method: 'tasks.heartbeat', params: { leaseSec: 5 } },
      { method: 'tasks.heartbeat', params: { leaseSec: '60' } },
      { method: 'tasks.heartbeat', params: { leaseSec: 10 ** 9 } },
      { method: 'tasks.release', params: { reason: 7 } },
      { method: 'tasks.review', params: { decision: 'merge' } },
      { method: 'tasks.complete', params: {} },
      `{"jsonrpc":"2.0","id":1,"method":"tasks.complete","params":{"summary":"x","__proto__":{"id":${t2.id}}}}`,
      { method: 'tasks.add', params: { project: proj, title: 'from the agent' } },
      { method: 'tasks.update', params: { id: t2.id, priority: 100 } },
      { method: 'tasks.cancel', params: { id: t2.id } },
      { method: 'tasks.list', params: {} },
      { method: 'tasks.__proto__', params: {} },
      { method: 'sessions.list', params: {} },
      '{"jsonrpc":"2.0","id":1,"method":"tasks.complete","params":{"summary":"x"',
      'not json at all',
      '{"id":1,"method":"tasks.claim"}',
      '[{"jsonrpc":"2.0","id":1,"method":"tasks.claim"}]',
    ]);
    expect(answers.map(code)).toEqual([
      ...Array(10).fill('INVALID_PARAMS'),
      ...Array(6).fill('METHOD_NOT_FOUND'),
      'PARSE_ERROR',
      'PARSE_ERROR',
      'INVALID_REQUEST',
      'INVALID_REQUEST',
    ]);
    expect(answers[16]!.body?.error?.code).toBe(-32700);
    // a's own traffic may have extended its lease (touch); nothing else moved.
    expect((await tasksOf(proj)).map(stable)).toEqual(before.map(stable));
  }, 300_000);

  it('a lease that ran out is lost: the old holder is refused, and the task never has two holders', async () => {
    const proj = await project();
    const t = await d.client.tasks.add({ project: proj, title: 'slow work', maxAttempts: 5 });
    const [a, b] = await Promise.all([session(proj), session(proj)]);
    const [claimed] = await bridge(a.container, [{ method: 'tasks.claim', params: { leaseSec: 10 } }]);
    expect(claimed!.body?.result?.task).toMatchObject({ id: t.id, attempts: 1, claim: { session: a.id } });
    // a goes quiet (any call on its bridge would extend the lease); the sweep takes the task back.
    await poll(async () => (await d.client.tasks.get({ id: t.id })).state === 'open', 60_000, 'the lease to run out and the task to reopen');
    const [again] = await bridge(b.container, [{ method: 'tasks.claim', params: {} }]);
    expect(again!.body?.result?.task).toMatchObject({ id: t.id, attempts: 2, claim: { session: b.id, attempt: 2 } });

    const late = await bridge(a.container, [
      { method: 'tasks.heartbeat', params: {} },
      { method: 'tasks.heartbeat', params: { leaseSec: 3600 } },
      { method: 'tasks.complete', params: { summary: 'finished it after all' } },
      { method: 'tasks.fail', params: { reason: 'x' } },
      { method: 'tasks.release', params: {} },
      { method: 'tasks.claim', params: {} },
    ]);
    expect(late.map(code)).toEqual(['TASK_LEASE_LOST', 'TASK_LEASE_LOST', 'TASK_LEASE_LOST', 'TASK_LEASE_LOST', 'TASK_LEASE_LOST', 'ok']);
    expect(late[5]!.body?.result?.task).toBeNull(); // nothing else is open; b holds this one
    const held = await d.client.tasks.get({ id: t.id });
    expect(held).toMatchObject({ state: 'claimed', attempts: 2, claim: { session: b.id }, result: null, notes: [{ kind: 'expired', session: a.id, attempt: 1 }] });
    expect(await exec(a.container, "process.stdout.write(String(require('fs').existsSync('/host/task.json')))")).toBe('false');

    const [done] = await bridge(b.container, [{ method: 'tasks.complete', params: { summary: 'done by b' } }]);
    expect(done!.body?.result?.task).toMatchObject({ state: 'done', result: { summary: 'done by b' } });
    // Who held the task, in the order berthd said so: never a second holder before the first let go.
    const story = events
      .filter((e) => (e.type === 'task.claimed' || e.type === 'task.released' || e.type === 'task.completed') && e.data.task.id === t.id)
      .map((e) => `${e.type} ${'session' in e.data ? e.data.session?.id : ''}`);
    expect(story).toEqual([`task.claimed ${a.id}`, `task.released ${a.id}`, `task.claimed ${b.id}`, `task.completed ${b.id}`]);
  }, 300_000);

  it('refuses oversized input with clear codes and changes nothing: a 10 MB body, a 100 KB body, a 1 MB summary', async () => {
    const proj = await project();
    const t = await d.client.tasks.add({ project: proj, title: 'sized' });
    const before = await tasksOf(proj);

    const huge = await d.client.tasks.add({ project: proj, title: 'huge', body: 'x'.repeat(10 * 1024 * 1024) }).then(
      () => null,
      (err: unknown) => err,
    );
    expect(huge).toBeInstanceOf(BerthError);
    expect((huge as BerthError).code).toBe('REQUEST_TOO_LARGE');
    const raw = await rawRpc(d.socket, JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tasks.add', params: { project: proj, title: 'huge', body: 'x'.repeat(10 * 1024 * 1024) } }));
    expect((raw.body as { error: { data: { code: string } } }).error.data.code).toBe('REQUEST_TOO_LARGE');

    const big = await d.client.tasks.add({ project: proj, title: 'big', body: 'y'.repeat(100 * 1024) }).then(
      () => null,
      (err: unknown) => err,
    );
    expect((big as BerthError).code).toBe('TASK_TOO_LARGE');
    const bigUpdate = await d.client.tasks.update({ id: t.id, body: 'y'.repeat(100 * 1024) }).then(
      () => null,
      (err: unknown) => err,
    );
    expect((bigUpdate as BerthError).code).toBe('TASK_TOO_LARGE');
    expect(await tasksOf(proj)).toEqual(before);

    const a = await session(proj);
    const [claimed, summary, reason, notes, heartbeat] = await bridge(a.container, [
      { method: 'tasks.claim', params: {} },
      { method: 'tasks.complete', params: { summary: 's'.repeat(1_000_000) } },
      { method: 'tasks.fail', params: { reason: 'r'.repeat(100 * 1024) } },
      { method: 'tasks.release', params: { reason: 'r'.repeat(100 * 1024) } },
      { method: 'tasks.heartbeat', params: {} },
    ]);
    expect(claimed!.body?.result?.task?.id).toBe(t.id);
    expect([summary, reason, notes].map((x) => code(x!))).toEqual(['TASK_TOO_LARGE', 'TASK_TOO_LARGE', 'TASK_TOO_LARGE']);
    expect(code(heartbeat!)).toBe('ok');
    expect(await d.client.tasks.get({ id: t.id })).toMatchObject({ state: 'claimed', claim: { session: a.id }, result: null, notes: [] });
    // Past the bridge's 1 MiB for a call, the request is refused before it is read.
    const [over] = await bridge(a.container, [JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tasks.complete', params: { summary: 's'.repeat(2 * 1024 * 1024) } })]);
    expect(over!.status === 413 || over!.status === 0).toBe(true);
    expect(await d.client.tasks.get({ id: t.id })).toMatchObject({ state: 'claimed', result: null });
  }, 300_000);

  it('several sessions claiming at once never get the same task, dependencies included', async () => {
    const proj = await project();
    const ids: number[] = [];
    for (let i = 0; i < 100; i++) {
      // One in five waits on the task five before it: claimable only once that one is done.
      const dependsOn = i % 5 === 4 ? [ids[i - 4]!] : [];
      ids.push((await d.client.tasks.add({ project: proj, title: `t${i}`, priority: i % 3, dependsOn })).id);
    }
    const sessions = await Promise.all(Array.from({ length: 5 }, () => session(proj)));
    const outs = await Promise.all(sessions.map((s) => exec(s.container, WORKER)));
    const got = outs.map((o) => JSON.parse(o.trim().split('\n').at(-1)!) as number[]);
    const all = got.flat();
    expect(all).toHaveLength(100);
    expect(new Set(all).size).toBe(100);
    expect([...all].sort((x, y) => x - y)).toEqual(ids);

    const final = await tasksOf(proj);
    expect(final.every((t) => t.state === 'done' && t.attempts === 1)).toBe(true);
    // Each done by the session that was given it, as the summary (its hostname) and the events say.
    const byId = new Map(final.map((t) => [t.id, t]));
    for (const [k, s] of sessions.entries()) {
      const hostname = s.container.slice(0, 12);
      for (const id of got[k]!) expect(byId.get(id)!.result?.summary).toBe(`done by ${hostname}`);
    }
    const seqOf = (type: string, id: number) => events.find((e) => e.type === type && 'task' in e.data && e.data.task.id === id)?.seq;
    await poll(async () => ids.every((id) => seqOf('task.completed', id) !== undefined), 30_000, 'every completion on /events');
    for (const t of final) {
      const claims = events.filter((e) => e.type === 'task.claimed' && e.data.task.id === t.id);
      expect(claims).toHaveLength(1);
      // A dependent was claimed only after its dependency was done.
      for (const dep of t.dependsOn) expect(seqOf('task.completed', dep)!).toBeLessThan(claims[0]!.seq);
    }
  }, 300_000);
});
