import { execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BERTH_BIN, poll, sh, spawnDaemon, startWithProject, type DaemonProcess } from '../helpers/daemon.js';

const exec = promisify(execFile);

/**
 * Whether process `pid` holds an open connection to the Unix socket at `socket`: `ss -xp` lists the
 * server's end with the socket's path and its peer's inode, and the client's end with its pid.
 * Without `ss`, true after a few seconds (a guess, for machines without iproute2).
 */
async function connectedTo(pid: number, socket: string, since: number): Promise<boolean> {
  let out: string;
  try {
    out = (await exec('ss', ['-xpn'], { maxBuffer: 64 * 1024 * 1024 })).stdout;
  } catch {
    return Date.now() - since > 5000;
  }
  const peersOfServer = new Set<string>();
  const ofClient = new Set<string>();
  for (const line of out.split('\n')) {
    // u_str ESTAB 0 0 <local path or *> <local inode> <peer path or *> <peer inode> users:((...))
    const f = line.trim().split(/\s+/);
    if (f[0] !== 'u_str' || f[1] !== 'ESTAB') continue;
    if (f[4] === socket) peersOfServer.add(f[7]!);
    if (line.includes(`pid=${pid},`)) ofClient.add(f[5]!);
  }
  return [...ofClient].some((inode) => peersOfServer.has(inode));
}

/** `berth start --follow`, `berth wait` and `berth events`, as a person runs them, on the real engine. */
describe('CLI: start --follow, wait, events', () => {
  let d: DaemonProcess;

  beforeAll(async () => {
    ({ d } = await startWithProject());
    await d.client.agents.define({ name: 'counter', command: sh('echo one; sleep 2; echo two >&2; exit 3'), restartPolicy: 'never', readOnly: true });
    await d.client.agents.define({ name: 'napper', command: sh('sleep 8; exit 4'), restartPolicy: 'never', readOnly: true });
  });
  afterAll(async () => {
    await d?.[Symbol.asyncDispose]();
  });

  const berth = async (...args: string[]) => {
    try {
      const r = await exec(process.execPath, [BERTH_BIN, '--socket', d.socket, ...args], { env: { PATH: process.env.PATH, HOME: d.home } });
      return { code: 0, stdout: r.stdout, stderr: r.stderr };
    } catch (e) {
      const x = e as { code: number; stdout: string; stderr: string };
      return { code: x.code, stdout: x.stdout, stderr: x.stderr };
    }
  };

  /** A CLI left running (events, wait) whose output is collected until it ends. */
  const background = (...args: string[]) => {
    const p = spawn(process.execPath, [BERTH_BIN, '--socket', d.socket, ...args], { env: { PATH: process.env.PATH, HOME: d.home } });
    const r = { stdout: '', stderr: '', code: null as number | null };
    p.stdout.on('data', (b: Buffer) => (r.stdout += b.toString()));
    p.stderr.on('data', (b: Buffer) => (r.stderr += b.toString()));
    const ended = new Promise<void>((resolve) => p.on('close', (code) => ((r.code = code), resolve())));
    return { p, r, ended };
  };

  it('start --follow prints the output as it comes and exits with the agent\'s exit code', async () => {
    const r = await berth('start', 'web', '--agent', 'counter', '--name', 'counted', '--follow');
    expect(r.code).toBe(3);
    expect(r.stdout).toBe('one\n');
    expect(r.stderr).toMatch(/^[0-9a-f]{12}  counted  running/);
    expect(r.stderr).toContain('two\n');
    expect(r.stderr).toMatch(/counted exited \(3\)\n$/);
    // Under --json: the log lines as NDJSON on stdout.
    await berth('rm', 'counted');
    const j = await berth('--json', 'start', 'web', '--agent', 'counter', '--name', 'counted', '-f');
    expect(j.code).toBe(3);
    const lines = j.stdout.trim().split('\n').map((l) => JSON.parse(l) as { stream: string; line: string });
    expect(lines.map((l) => [l.stream, l.line])).toEqual([['stdout', 'one'], ['stderr', 'two']]);
    await berth('rm', 'counted');
  });

  it('wait prints and exits with the exit code, also across a kill -9 of berthd; --state waits for a state', async () => {
    const s = await d.client.sessions.start({ project: 'web', agent: 'napper', name: 'nap' });
    expect((await berth('wait', 'nap', '--state', 'running')).stdout).toBe('nap running\n');
    const w = background('wait', 'nap');
    // berthd dies under the waiting CLI (once it is waiting: connected, however long a busy machine
    // takes to start it) and comes back; the agent keeps running meanwhile.
    const spawned = Date.now();
    await poll(async () => (await connectedTo(w.p.pid!, d.socket, spawned)) || null, 60_000, 'the waiting CLI to connect');
    await d.stop('SIGKILL');
    d = spawnDaemon({ home: d.home, ownsHome: true });
    await d.waitReady();
    await w.ended;
    expect(w.r.code, `stdout ${w.r.stdout} stderr ${w.r.stderr} session ${JSON.stringify(await d.client.sessions.get({ id: s.id }))}`).toBe(4);
    expect(w.r.stdout).toBe('4\n');
    expect((await d.client.sessions.get({ id: s.id })).exitCode).toBe(4);
    const bad = await berth('wait', 'nap', '--state', 'sleeping');
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/--state must be one of pending\|creating\|running/);
    expect((await berth('wait', 'ghost')).stderr).toMatch(/error\[SESSION_NOT_FOUND\]/);
    await berth('rm', 'nap');
  });

  it('events prints what happens live, filtered by type (with *), session and project; --json and --since', async () => {
    const ev = background('events', '--filter', 'type=session.*', '--filter', 'session=watched');
    const all = background('--json', 'events', '--filter', 'project=web', '--filter', 'type=session.state');
    // Both listening (connected), however long a busy machine takes to start them.
    const spawned = Date.now();
    await poll(async () => ((await connectedTo(ev.p.pid!, d.socket, spawned)) && (await connectedTo(all.p.pid!, d.socket, spawned))) || null, 60_000, 'the event CLIs to connect');
    await berth('start', 'web', '--agent', 'counter', '--name', 'watched', '--follow');
    await berth('start', 'web', '--agent', 'counter', '--name', 'other', '--follow');
    await poll(async () => /watched running -> exited \(3\)/.test(ev.r.stdout) && /"name":"other"/.test(all.r.stdout), 30_000, 'the events');
    ev.p.kill('SIGINT');
    all.p.kill('SIGINT');
    await Promise.all([ev.ended, all.ended]);
    expect(ev.r.code).toBe(0);
    const lines = ev.r.stdout.trim().split('\n');
    expect(lines.every((l) => /^\S+\s+\d+\s+session\.\S+\s+/.test(l))).toBe(true);
    expect(lines.some((l) => /session\.created\s+watched \(web, agent counter\)/.test(l))).toBe(true);
    expect(ev.r.stdout).not.toContain('other');
    const json = all.r.stdout.trim().split('\n').map((l) => JSON.parse(l) as { type: string; seq: number; data: { session: { name: string } } });
    expect(new Set(json.map((e) => e.type))).toEqual(new Set(['session.state']));
    expect(new Set(json.map((e) => e.data.session.name))).toEqual(new Set(['watched', 'other']));
    // --since: what berthd keeps, from that number on.
    const first = json[0]!.seq;
    const again = background('--json', 'events', '--since', String(first - 1), '--filter', 'type=session.state');
    await poll(async () => again.r.stdout.includes('"other"'), 20_000, 'the replayed events');
    again.p.kill('SIGINT');
    await again.ended;
    expect(JSON.parse(again.r.stdout.split('\n')[0]!).seq).toBe(first);
    const bad = await berth('events', '--filter', 'colour=red');
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/--filter takes type=…, session=… or project=…/);
    await berth('rm', 'watched');
    await berth('rm', 'other');
  });
});
