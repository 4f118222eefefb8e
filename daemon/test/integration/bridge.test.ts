import { execFile } from 'node:child_process';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BerthEvent, Session } from '@berth/client-sdk/protocol';
import { poll, startWithProject, type DaemonProcess, spawnDaemon } from '../helpers/daemon.js';
import { docker } from '../helpers/docker.js';
import { ModelUpstream } from '../helpers/model-upstream.mjs';

const run = promisify(execFile);
/** Debian with Node 20 (scripts/build-offline-base.sh): node in the container plays the agent's HTTP client. */
const NODE_IMAGE = 'berth-offline-base:bookworm';
const API_KEY = 'sk-ant-api03-REAL-host-key-do-not-leak';
const OAUTH = 'sk-ant-oat01-REAL-host-oauth-do-not-leak';

/**
 * In the container: one HTTP request on the bridge socket, printed as JSON {status, headers, body}.
 * argv: path, body (JSON text or ""), extra headers (JSON), method.
 */
const CLIENT = `
const http = require('node:http');
const [path, body, headers, method] = process.argv.slice(1);
const req = http.request({ socketPath: process.env.CLAUDE_BRIDGE_SOCKET, path, method: method || 'POST', headers: { 'content-type': 'application/json', ...JSON.parse(headers || '{}') } }, (res) => {
  const c = []; res.on('data', (d) => c.push(d));
  res.on('end', () => console.log(JSON.stringify({ status: res.statusCode, headers: res.headers, body: Buffer.concat(c).toString() })));
});
req.on('error', (e) => { console.log(JSON.stringify({ status: 0, error: e.code || e.message })); });
req.end(body || undefined);
`;

interface Answer {
  status: number;
  headers?: Record<string, string>;
  body?: string;
  error?: string;
}

async function call(container: string, path: string, body: unknown = null, headers: Record<string, string> = {}, method = 'POST'): Promise<Answer> {
  const { stdout } = await run('docker', ['exec', container, 'node', '-e', CLIENT, path, body === null ? '' : JSON.stringify(body), JSON.stringify(headers), method], {
    maxBuffer: 16 * 1024 * 1024,
  });
  return JSON.parse(stdout.trim().split('\n').at(-1)!) as Answer;
}

const message = (stream = false) => ({ model: 'claude-sonnet-4-5', max_tokens: 64, stream, messages: [{ role: 'user', content: 'hi' }] });

describe('Claude bridge (real engine, stand-in upstream)', () => {
  let up: ModelUpstream;
  let d: DaemonProcess;
  const events: BerthEvent[] = [];
  const ac = new AbortController();

  async function session(agent: string, extra: Record<string, unknown> = {}): Promise<Session & { containerId: string }> {
    const s = await d.client.sessions.start({ project: 'web', agent, ...extra });
    const running = await poll(async () => {
      const x = await d.client.sessions.get({ id: s.id });
      return x.state === 'running' && x.containerId ? x : null;
    }, 120_000, `session ${s.name} running`);
    return running as Session & { containerId: string };
  }

  beforeAll(async () => {
    up = await ModelUpstream.start({ host: '0.0.0.0' });
    ({ d } = await startWithProject({ env: { BERTH_MODEL_UPSTREAM: up.url, BERTH_MODEL_CREDENTIAL: 'secret:anthropic', BERTH_MODEL_MAX_INFLIGHT: '2' } }));
    await writeFile(join(d.home, 'secrets.yaml'), `anthropic: ${API_KEY}\noauth: ${OAUTH}\n`, { mode: 0o600 });
    const idle = ['node', '-e', 'setInterval(() => {}, 1 << 30)'];
    await d.client.agents.define({ name: 'coder', image: NODE_IMAGE, command: idle, network: 'none', readOnly: true });
    await d.client.agents.define({ name: 'frugal', image: NODE_IMAGE, command: idle, network: 'none', readOnly: true, budgetTokens: 30 });
    void (async () => {
      for await (const e of d.client.events({ signal: ac.signal })) events.push(e);
    })().catch(() => {});
  }, 180_000);

  afterAll(async () => {
    ac.abort();
    await d?.[Symbol.asyncDispose]();
    await up?.close();
  });

  it('relays JSON and SSE with --network none, with the host credential added and the container one dropped', async () => {
    const s = await session('coder');
    const before = up.messages().length;
    const json = await call(s.containerId, '/v1/messages?beta=true', message(), { 'x-api-key': 'container-placeholder', authorization: 'Bearer nope' });
    expect(json.status).toBe(200);
    expect(JSON.parse(json.body!).content[0].text).toBe('Hello from the stand-in.');
    const sse = await call(s.containerId, '/v1/messages', message(true), { 'anthropic-beta': 'tools-2024', 'anthropic-version': '2023-06-01' });
    expect(sse.status).toBe(200);
    expect(sse.headers!['content-type']).toContain('text/event-stream');
    expect(sse.body).toContain('event: message_stop');
    const count = await call(s.containerId, '/v1/messages/count_tokens', message());
    expect(JSON.parse(count.body!)).toEqual({ input_tokens: 11 });

    const seen = up.messages().slice(before);
    expect(seen).toHaveLength(2);
    for (const r of seen) {
      expect(r.headers['x-api-key']).toBe(API_KEY);
      expect(r.headers.authorization).toBeUndefined();
    }
    expect(seen[1]!.headers['anthropic-beta']).toBe('tools-2024');
    expect(up.seen.find((r) => r.path === '/v1/messages' && r.headers['x-api-key'] === API_KEY)).toBeTruthy();

    // Nowhere in the container or its description.
    const inspect = await docker('inspect', s.containerId);
    expect(inspect).not.toContain(API_KEY);
    expect(inspect).toContain('CLAUDE_BRIDGE_SOCKET=/host/claude-bridge.sock');
    const { stdout } = await run('docker', ['exec', s.containerId, 'sh', '-c', 'cat /proc/*/environ 2>/dev/null | tr "\\0" "\\n"; ls -la /host; grep -rs sk-ant / --exclude-dir=proc --exclude-dir=sys -l 2>/dev/null | head -5; true'], {
      maxBuffer: 16 * 1024 * 1024,
    });
    expect(stdout).not.toContain('sk-ant');
    expect(stdout).toContain('claude-bridge.sock');
    expect(JSON.stringify(await d.client.sessions.get({ id: s.id }))).not.toContain(API_KEY);
    expect(d.output).not.toContain(API_KEY);
  }, 240_000);

  it('counts usage as the upstream reported it, per session and model, in get, list, events and the audit', async () => {
    const s = await session('coder');
    await call(s.containerId, '/v1/messages', message());
    await call(s.containerId, '/v1/messages', message(true));
    const u = await d.client.sessions.usage({ id: s.id });
    // The stand-in reports 11 in, 7 out, 5 cache read, 3 cache creation per message.
    expect(u).toMatchObject({ id: s.id, requests: 2, inputTokens: 22, outputTokens: 14, cacheReadTokens: 10, cacheCreationTokens: 6, budgetTokens: null });
    expect(u.costUsd).toBe(0.0003015); // 2 × (11 × $3 + 7 × $15 + 5 × $0.30 + 3 × $3.75) per million
    expect(Object.keys(u.byModel)).toEqual(['claude-sonnet-4-5']);
    expect((await d.client.sessions.get({ id: s.id })).usage).toMatchObject({ requests: 2, inputTokens: 22 });
    const listed = (await d.client.sessions.list({ limit: 1000 })).items.find((x) => x.id === s.id)!;
    expect(listed.usage).toEqual({ requests: 2, inputTokens: 22, outputTokens: 14, cacheReadTokens: 10, cacheCreationTokens: 6, costUsd: u.costUsd });
    await poll(async () => events.some((e) => e.type === 'session.usage' && e.data.id === s.id && e.data.usage.requests === 2), 10_000, 'session.usage event');
    const audit = await d.client.sessions.requests({ id: s.id });
    expect(audit.map((r) => [r.path, r.status, r.inputTokens, r.model])).toEqual([
      ['/v1/messages', 200, 11, 'claude-sonnet-4-5'],
      ['/v1/messages', 200, 11, 'claude-sonnet-4-5'],
    ]);
    expect(JSON.stringify(audit)).not.toContain('hi');

    // Usage outlives the session.
    await d.client.sessions.remove({ id: s.id, force: true });
    await poll(async () => !(await d.client.sessions.list({ limit: 1000 })).items.some((x) => x.id === s.id), 60_000, 'removal');
    expect((await d.client.sessions.usage({ id: s.id })).requests).toBe(2);
    expect(await d.client.sessions.requests({ id: s.id })).toHaveLength(2);
  }, 240_000);

  it('stops a session at its token budget with a clear error and a session.budget event', async () => {
    const s = await session('frugal');
    expect(s.budgetTokens).toBe(30);
    expect((await call(s.containerId, '/v1/messages', message())).status).toBe(200); // 26 used
    expect((await call(s.containerId, '/v1/messages', message())).status).toBe(200); // 52 used: over from here
    const refused = await call(s.containerId, '/v1/messages', message());
    expect(refused.status).toBe(403);
    const body = JSON.parse(refused.body!);
    expect(body.error.type).toBe('permission_error');
    expect(body.berth.code).toBe('BUDGET_EXCEEDED');
    expect(body.error.message).toContain('budget');
    await poll(async () => events.some((e) => e.type === 'session.budget' && e.data.id === s.id), 10_000, 'session.budget event');
    expect((await d.client.sessions.usage({ id: s.id })).requests).toBe(2);
    // A start may override the agent's budget.
    const more = await session('frugal');
    const unlimited = await d.client.sessions.start({ project: 'web', agent: 'frugal', budgetTokens: null });
    expect(unlimited.budgetTokens).toBeNull();
    expect(more.budgetTokens).toBe(30);
  }, 240_000);

  it('counts an answer the agent hung up on midway, and a budget holds for requests that waited in the queue', async () => {
    const s = await session('coder');
    up.opts.streamPauseMs = 3000;
    try {
      // Read the first chunk (message_start: the input counts), then hang up.
      await run('docker', ['exec', s.containerId, 'node', '-e', `
        const http = require('node:http');
        const req = http.request({ socketPath: process.env.CLAUDE_BRIDGE_SOCKET, path: '/v1/messages', method: 'POST', headers: { 'content-type': 'application/json' } }, (res) => {
          res.once('data', () => { req.destroy(); process.exit(0); });
        });
        req.end(${JSON.stringify(JSON.stringify(message(true)))});
      `]);
      const u = await poll(async () => {
        const x = await d.client.sessions.usage({ id: s.id });
        return x.requests === 1 ? x : null;
      }, 15_000, 'the hung-up request counted');
      expect(u).toMatchObject({ inputTokens: 11, cacheReadTokens: 5, cacheCreationTokens: 3 });
      expect((await d.client.sessions.requests({ id: s.id })).at(-1)).toMatchObject({ status: 200, error: 'CLIENT_GONE', inputTokens: 11 });
    } finally {
      up.opts.streamPauseMs = 0;
    }

    // Budget 30 (26 a call), two slots upstream: ten calls at once go out two by two, and once
    // the first answers have used the budget the ones still waiting are refused when their turn comes.
    up.opts.delayMs = 500;
    try {
      const f = await session('frugal');
      const all = await Promise.all(Array.from({ length: 10 }, () => call(f.containerId, '/v1/messages', message())));
      const ok = all.filter((a) => a.status === 200).length;
      expect(ok).toBeGreaterThanOrEqual(2);
      expect(ok).toBeLessThanOrEqual(3);
      expect(all.filter((a) => a.status === 403).every((a) => JSON.parse(a.body!).berth.code === 'BUDGET_EXCEEDED')).toBe(true);
      expect((await d.client.sessions.usage({ id: f.id })).requests).toBe(ok);
      // One session cannot hold more than 16 requests (and their bodies) in berthd: the rest are
      // told to come back (429, which Claude Code retries), and nothing is lost or counted twice.
      const flood = await session('coder');
      const { stdout: statuses } = await run('docker', ['exec', flood.containerId, 'node', '-e', `
        const http = require('node:http');
        const one = () => new Promise((resolve) => {
          const req = http.request({ socketPath: process.env.CLAUDE_BRIDGE_SOCKET, path: '/v1/messages', method: 'POST', agent: false, headers: { 'content-type': 'application/json' } }, (res) => {
            const c = []; res.on('data', (d) => c.push(d)); res.on('end', () => resolve({ status: res.statusCode, body: Buffer.concat(c).toString() }));
          });
          req.on('error', (e) => resolve({ status: 0, body: e.message }));
          req.end(${JSON.stringify(JSON.stringify(message()))});
        });
        Promise.all(Array.from({ length: 24 }, one)).then((a) => console.log(JSON.stringify(a)));
      `]);
      const answers = JSON.parse(statuses) as Answer[];
      const limited = answers.filter((a) => a.status === 429);
      expect(limited.length).toBe(24 - 16);
      expect(JSON.parse(limited[0]!.body!).error.type).toBe('rate_limit_error');
      expect(answers.filter((a) => a.status === 200).length).toBe(24 - limited.length);
      expect((await d.client.sessions.usage({ id: flood.id })).requests).toBe(24 - limited.length);
    } finally {
      up.opts.delayMs = 0;
    }
  }, 240_000);

  it('refuses what it does not relay, survives garbage, and keeps each session to its own socket', async () => {
    const s = await session('coder');
    const other = await session('coder');
    const forbidden = await call(s.containerId, '/v1/complete', message());
    expect(forbidden.status).toBe(403);
    expect(JSON.parse(forbidden.body!).berth.code).toBe('BRIDGE_PATH_FORBIDDEN');
    expect((await call(s.containerId, '/../../rpc', {}, {}, 'GET')).status).toBe(403);
    await d.waitForLog('Bridge refused a request outside the allow-list');
    // 40 MiB is over the Messages API's limit: refused before it reaches anyone.
    const seenBefore = up.seen.length;
    const { stdout: big } = await run('docker', ['exec', s.containerId, 'node', '-e', `${CLIENT.replace("req.end(body || undefined);", "req.end(Buffer.alloc(40 * 1024 * 1024, 97));")}`, '/v1/messages', '', '{}'], { maxBuffer: 1 << 24 });
    const bigAnswer = JSON.parse(big.trim().split('\n')[0]!) as Answer;
    expect([413, 0]).toContain(bigAnswer.status);
    expect(up.seen.length).toBe(seenBefore);
    // Garbage and half requests on the socket.
    await run('docker', ['exec', s.containerId, 'node', '-e', `
      const net = require('node:net');
      for (let i = 0; i < 20; i++) { const c = net.connect(process.env.CLAUDE_BRIDGE_SOCKET); c.on('error', () => {}); c.write(i % 2 ? Buffer.from([0, 255, 13, 10, 13, 10]) : 'POST /v1/messages HTTP/1.1\\r\\nContent-Length: 99999\\r\\n\\r\\n{'); setTimeout(() => c.destroy(), 200); }
      setTimeout(() => {}, 500);
    `]);
    expect((await call(s.containerId, '/v1/messages', message())).status).toBe(200);
    expect((await d.client.daemon.status()).version).toBeTruthy();
    // Only its own bridge is there; nothing of berthd's main socket.
    const { stdout } = await run('docker', ['exec', s.containerId, 'sh', '-c', `ls -a /host; cat /proc/mounts | grep -c host; ls /host/../ ; test -e /host/${other.id} && echo SEES-OTHER; true`]);
    expect(stdout.split('\n').filter((l) => l && !['.', '..'].includes(l))[0]).toBe('claude-bridge.sock');
    expect(stdout).not.toContain('SEES-OTHER');
    expect(stdout).not.toContain('berth.sock');
    // The socket cannot be replaced from inside (read-only mount).
    const { stdout: rw } = await run('docker', ['exec', s.containerId, 'sh', '-c', 'rm -f /host/claude-bridge.sock 2>&1; touch /host/x 2>&1; ls /host']);
    expect(rw).toContain('Read-only file system');
    expect(rw).toContain('claude-bridge.sock');
    // A hello names this session and no other.
    const hello = await call(s.containerId, '/rpc', { jsonrpc: '2.0', id: 1, method: 'bridge.hello', params: {} });
    expect(JSON.parse(hello.body!).result.session).toEqual({ id: s.id, name: s.name });
  }, 240_000);

  it('reports Claude Code hooks as session.activity within a second', async () => {
    const s = await session('coder');
    const t0 = Date.now();
    const r = await call(s.containerId, '/rpc', { jsonrpc: '2.0', id: 1, method: 'bridge.hook', params: { event: 'Notification', payload: { message: 'Claude needs your permission to use Bash' } } });
    expect(JSON.parse(r.body!).result.activity.state).toBe('waiting-input');
    const e = await poll(async () => events.find((x) => x.type === 'session.activity' && x.data.id === s.id), 5_000, 'session.activity');
    expect(Date.parse(e.ts) - t0).toBeLessThan(1000 + (Date.now() - t0)); // published while the call was answered
    expect(e.type === 'session.activity' && e.data.activity).toMatchObject({ state: 'waiting-input', reason: 'hook:Notification: Claude needs your permission to use Bash' });
    expect((await d.client.sessions.get({ id: s.id })).activity?.state).toBe('waiting-input');
    await call(s.containerId, '/rpc', { jsonrpc: '2.0', id: 2, method: 'bridge.hook', params: { event: 'Stop', payload: {} } });
    expect((await d.client.sessions.get({ id: s.id })).activity?.state).toBe('idle');
  }, 240_000);

  it('survives kill -9 of berthd: the call in flight fails, the next one works, the container is never restarted', async () => {
    const s = await session('coder');
    const startedAt = await docker('inspect', '-f', '{{.State.StartedAt}}', s.containerId);
    up.opts.delayMs = 4000;
    const inFlight = call(s.containerId, '/v1/messages', message(true));
    await poll(async () => up.inFlight > 0, 20_000, 'the request upstream');
    d.proc.kill('SIGKILL');
    await d.waitExit();
    const failed = await inFlight;
    expect(failed.status).not.toBe(200);
    up.opts.delayMs = 0;
    // While berthd is down the socket is there but nobody answers: a clear refusal, not a hang.
    expect((await call(s.containerId, '/health', null, {}, 'GET')).error).toBe('ECONNREFUSED');
    d = spawnDaemon({ home: d.home, ownsHome: true, env: { BERTH_MODEL_UPSTREAM: up.url, BERTH_MODEL_CREDENTIAL: 'secret:anthropic', BERTH_MODEL_MAX_INFLIGHT: '2' } });
    await d.waitReady(60_000);
    const again = await call(s.containerId, '/v1/messages', message());
    expect(again.status).toBe(200);
    expect(JSON.parse(again.body!).content[0].text).toBe('Hello from the stand-in.');
    expect(await docker('inspect', '-f', '{{.State.StartedAt}}', s.containerId)).toBe(startedAt);
    expect((await d.client.sessions.get({ id: s.id })).containerId).toBe(s.containerId);
    void (async () => {
      for await (const e of d.client.events({ signal: ac.signal })) events.push(e);
    })().catch(() => {});
  }, 240_000);

  it("claude-login: the host's Claude Code login goes out as an OAuth bearer, re-read when the host renews it", async () => {
    const claudeDir = join(d.home, 'host-claude');
    await mkdir(claudeDir, { mode: 0o700 });
    const login = (token: string) => writeFile(join(claudeDir, '.credentials.json'), JSON.stringify({ claudeAiOauth: { accessToken: token, expiresAt: Date.now() + 3600_000 } }), { mode: 0o600 });
    await login(`${OAUTH}-1`);
    await d.stop('SIGTERM');
    d = spawnDaemon({ home: d.home, ownsHome: true, env: { BERTH_MODEL_UPSTREAM: up.url, BERTH_MODEL_CREDENTIAL: 'claude-login', CLAUDE_CONFIG_DIR: claudeDir } });
    await d.waitReady(60_000);
    const s = await session('coder');
    const before = up.messages().length;
    expect((await call(s.containerId, '/v1/messages', message(), { 'anthropic-beta': 'claude-code-20250219' })).status).toBe(200);
    await login(`${OAUTH}-2`);
    expect((await call(s.containerId, '/v1/messages', message())).status).toBe(200);
    const [first, second] = up.messages().slice(before);
    expect(first!.headers.authorization).toBe(`Bearer ${OAUTH}-1`);
    expect(first!.headers['anthropic-beta']).toBe('claude-code-20250219,oauth-2025-04-20');
    expect(first!.headers['x-api-key']).toBeUndefined();
    expect(second!.headers.authorization).toBe(`Bearer ${OAUTH}-2`);
    expect(await docker('inspect', s.containerId)).not.toContain(OAUTH);
    // No login at all: the agent is told what to do on the host.
    await rm(join(claudeDir, '.credentials.json'));
    const refused = await call(s.containerId, '/v1/messages', message());
    expect(refused.status).toBe(401);
    expect(JSON.parse(refused.body!).berth.code).toBe('MODEL_CREDENTIAL_MISSING');
    void (async () => {
      for await (const e of d.client.events({ signal: ac.signal })) events.push(e);
    })().catch(() => {});
  }, 240_000);

  it('20 sessions calling at once with BERTH_MODEL_MAX_INFLIGHT=2 all get answers, never more than 2 upstream at once', async () => {
    const slow = await ModelUpstream.start({ host: '0.0.0.0', delayMs: 300 });
    // The running daemon points at `up`: restart it on the slow upstream (same home, containers kept).
    await d.stop('SIGTERM');
    d = spawnDaemon({ home: d.home, ownsHome: true, env: { BERTH_MODEL_UPSTREAM: slow.url, BERTH_MODEL_CREDENTIAL: 'secret:anthropic', BERTH_MODEL_MAX_INFLIGHT: '2' } });
    await d.waitReady(60_000);
    try {
      const sessions = [];
      for (let i = 0; i < 20; i += 5) sessions.push(...(await Promise.all(Array.from({ length: 5 }, () => session('coder')))));
      const answers = await Promise.all(sessions.map((s) => call(s.containerId, '/v1/messages', message(true))));
      expect(answers.map((a) => a.status)).toEqual(sessions.map(() => 200));
      expect(slow.messages()).toHaveLength(20);
      expect(slow.maxInFlight).toBeLessThanOrEqual(2);
      expect(slow.connections).toBeLessThanOrEqual(2);
      const queued = (await Promise.all(sessions.map((s) => d.client.sessions.requests({ id: s.id })))).flat();
      expect(Math.max(...queued.map((r) => r.queuedMs))).toBeGreaterThan(0);
    } finally {
      await slow.close();
    }
  }, 600_000);
});
