import { spawn, type ChildProcess } from 'node:child_process';
import { rm, writeFile } from 'node:fs/promises';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import type { BerthEvent, Notification } from '@berth/client-sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BERTH_BIN, poll, sh, startDaemon, startWithProject, tempDir, type DaemonProcess } from '../helpers/daemon.js';

/** A webhook receiver on loopback that answers `failFirst` requests with 500, then 204. */
class Receiver {
  readonly requests: { status: number; headers: IncomingHttpHeaders; body: Notification }[] = [];
  private readonly server: Server;

  constructor(private readonly failFirst = 0) {
    this.server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const status = this.requests.length < this.failFirst ? 500 : 204;
        this.requests.push({ status, headers: req.headers, body: JSON.parse(Buffer.concat(chunks).toString('utf8')) as Notification });
        res.writeHead(status).end();
      });
    });
  }

  async listen(): Promise<string> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/berth`;
  }

  for(sessionId: string) {
    return this.requests.filter((r) => r.body.session.id === sessionId);
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

/** `berth watch` as a user runs it; its output collected as it comes. */
class Watch {
  stdout = '';
  stderr = '';
  readonly proc: ChildProcess;
  constructor(socket: string, home: string, json: boolean) {
    this.proc = spawn(process.execPath, [BERTH_BIN, '--socket', socket, ...(json ? ['--json'] : []), 'watch'], {
      env: { PATH: process.env.PATH, HOME: home },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.proc.stdout!.setEncoding('utf8').on('data', (s: string) => (this.stdout += s));
    this.proc.stderr!.setEncoding('utf8').on('data', (s: string) => (this.stderr += s));
  }

  get lines(): string[] {
    return this.stdout.split('\n').filter(Boolean);
  }

  async stop(): Promise<number | null> {
    if (this.proc.exitCode !== null) return this.proc.exitCode;
    const exited = new Promise<number | null>((resolve) => this.proc.once('exit', (code) => resolve(code)));
    this.proc.kill('SIGINT');
    return exited;
  }
}

describe('notifications (real berthd, real engine, webhooks on loopback)', () => {
  let home: string;
  let d: DaemonProcess;
  const steady = new Receiver();
  const flaky = new Receiver(2);
  const watches: Watch[] = [];
  const daemons: DaemonProcess[] = [];

  beforeAll(async () => {
    home = await tempDir();
    const [steadyUrl, flakyUrl] = [await steady.listen(), await flaky.listen()];
    await writeFile(
      join(home, 'config.yaml'),
      `notifyWebhooks:\n  - url: ${steadyUrl}\n  - url: ${flakyUrl}\n    events: [exited, failed]\n`,
    );
    ({ d } = await startWithProject({ home }));
    daemons.push(d);
    await d.client.agents.define({ name: 'crasher', command: sh('echo boom; exit 3'), restartPolicy: 'never' });
    await d.client.agents.define({ name: 'looper', command: sh('echo boom; exit 3'), restartPolicy: 'on-failure' });
    await d.client.agents.define({ name: 'fine', command: sh('echo done; exit 0'), restartPolicy: 'never' });
  });

  afterAll(async () => {
    await Promise.all(watches.map((w) => w.stop()));
    for (const x of daemons.reverse()) await x[Symbol.asyncDispose]();
    await steady.close();
    await flaky.close();
    if (home) await rm(home, { recursive: true, force: true });
  });

  it('an agent that exits 3: one `exited` notification, once per webhook; a webhook that fails twice gets it on the third try', async () => {
    const c = d.client;
    const events: BerthEvent[] = [];
    const ctl = new AbortController();
    const reading = (async () => {
      for await (const e of c.events({ signal: ctl.signal })) events.push(e);
    })().catch(() => {});

    const clean = await c.sessions.start({ project: 'web', agent: 'fine' });
    const s = await c.sessions.start({ project: 'web', agent: 'crasher' });
    await poll(async () => (await c.sessions.get({ id: s.id })).state === 'exited', 60_000, 'the agent to exit');
    await poll(async () => (await c.sessions.get({ id: clean.id })).state === 'exited', 60_000, 'the clean agent to exit');

    // The flaky receiver's third try comes after two backoff waits: by then every delivery of this
    // notification to the steady receiver has long happened, so its count is final.
    await poll(async () => flaky.for(s.id).length >= 3, 90_000, 'the third try at the flaky webhook');
    await poll(async () => steady.for(s.id).length >= 1, 30_000, 'the steady webhook');

    const [first, ...rest] = steady.for(s.id);
    expect(rest).toEqual([]);
    expect(first!.body).toMatchObject({
      kind: 'exited',
      session: { id: s.id, name: s.name, project: 'web', agent: 'crasher' },
      message: 'exited with code 3',
    });
    expect(first!.body.id).toMatch(/^[0-9a-f]{16}$/);
    expect(first!.headers['content-type']).toBe('application/json');
    expect(first!.headers['x-berth-notification']).toBe(first!.body.id);

    const tries = flaky.for(s.id);
    expect(tries.map((r) => r.status)).toEqual([500, 500, 204]);
    expect(tries.map((r) => r.body)).toEqual([first!.body, first!.body, first!.body]);
    expect(tries.map((r) => r.headers['x-berth-attempt'])).toEqual(['1', '2', '3']);

    // The clean exit is no notification, anywhere.
    expect(steady.for(clean.id)).toEqual([]);
    expect(flaky.for(clean.id)).toEqual([]);

    // /events has the same notification, once, after the state change that caused it.
    await poll(async () => events.some((e) => e.type === 'notification' && e.data.session.id === s.id), 10_000, 'the notification event');
    const notes = events.filter((e): e is Extract<BerthEvent, { type: 'notification' }> => e.type === 'notification' && e.data.session.id === s.id);
    expect(notes.map((e) => e.data)).toEqual([first!.body]);
    const cause = events.findIndex((e) => e.type === 'session.state' && e.data.session.id === s.id && e.data.session.state === 'exited');
    expect(cause).toBeGreaterThanOrEqual(0);
    expect(events.indexOf(notes[0]!)).toBeGreaterThan(cause);
    ctl.abort();
    await reading;
  }, 240_000);

  it('berth watch prints notifications live and keeps watching across a berthd restart', async () => {
    const human = new Watch(d.socket, home, false);
    const json = new Watch(d.socket, home, true);
    watches.push(human, json);

    // A crash-looping agent exits 3 again after each backoff, so a watcher still connecting when the
    // first exit happens sees the next one.
    const looping = await d.client.sessions.start({ project: 'web', agent: 'looper' });
    const printed = (w: Watch, name: string) => w.lines.filter((l) => l.includes(name));
    await poll(async () => printed(human, looping.name).length > 0 && printed(json, looping.id).length > 0, 120_000, 'watch to print the exit');
    const [ts, rest] = [printed(human, looping.name)[0]!.slice(0, 24), printed(human, looping.name)[0]!.slice(24)];
    expect(new Date(ts).toISOString()).toBe(ts);
    expect(rest).toBe(`  ${'exited'.padEnd(13)}  ${looping.name}  exited with code 3`);
    const raw = JSON.parse(printed(json, looping.id)[0]!) as BerthEvent;
    expect(raw).toMatchObject({ type: 'notification', data: { kind: 'exited', session: { id: looping.id, name: looping.name, agent: 'looper' } } });
    expect(raw.seq).toEqual(expect.any(Number));

    // berthd stops and a new one takes over the home: the watchers wait, reconnect, and print what
    // the new daemon reports, even what it reported before they were back.
    await d.stop();
    await poll(async () => human.stderr.includes('berthd went away'), 30_000, 'watch to notice');
    const d2 = await startDaemon({ home });
    daemons.push(d2);
    // A session started while berthd is still starting can be taken for a checkout a restart
    // interrupted (sessions/checkouts.ts resumeCreations): start it once berthd says it started.
    await d2.waitForLog('Started berthd', 60_000);
    const s2 = await d2.client.sessions.start({ project: 'web', agent: 'crasher' });
    await poll(async () => printed(human, s2.name).length > 0 && printed(json, s2.id).length > 0, 120_000, 'watch to print the exit after the restart');
    expect(printed(human, s2.name)).toHaveLength(1);
    expect(printed(json, s2.id)).toHaveLength(1);
    expect(human.stderr).toContain('berthd is back');
    expect(human.proc.exitCode).toBeNull();

    expect(await human.stop()).toBe(0);
    expect(await json.stop()).toBe(0);
    expect(json.stderr).toBe('');
  }, 360_000);
});
