import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { chmod, rm } from 'node:fs/promises';
import { createServer, request, type IncomingMessage, type Server } from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../helpers/daemon.js';
import { TEST_LABEL, docker } from '../helpers/docker.js';
import { ModelUpstream } from '../helpers/model-upstream.mjs';
import { CLAUDE_IMAGE, ensureClaudeImage } from '../helpers/claude-image.js';

const IMAGE = CLAUDE_IMAGE;
const RUN_LABEL = 'dev.berth.test.bridge-image';
const ANSWER = 'Hello through the berth bridge.';
const HOST_KEY = 'host-credential';

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}
function run(cmd: string, args: string[], timeoutMs = 180_000): Promise<Run> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    p.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
    p.once('error', reject);
    p.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/**
 * Plays berthd's part of the Claude bridge (client-sdk/src/protocol/bridge.ts) on a Unix socket:
 * /v1/messages* relayed to the stand-in upstream with the host's credential (the container's dropped),
 * /rpc answering bridge.hello and recording bridge.hook, /health, 403 for anything else.
 */
class FakeBridge {
  readonly requests: { method: string; path: string; authorization?: string; apiKey?: string }[] = [];
  readonly hooks: { event: string; payload?: Record<string, unknown> }[] = [];
  private constructor(private readonly server: Server) {}

  static async start(socket: string, upstream: ModelUpstream): Promise<FakeBridge> {
    let self!: FakeBridge;
    const server = createServer((req, res) => void self.handle(req, res, upstream).catch(() => res.destroy()));
    self = new FakeBridge(server);
    await new Promise<void>((resolve, reject) => server.once('error', reject).listen(socket, resolve));
    // The container runs as uid 1000; berthd does the same for its sockets.
    await chmod(socket, 0o666);
    return self;
  }

  private async handle(req: IncomingMessage, res: import('node:http').ServerResponse, upstream: ModelUpstream): Promise<void> {
    const path = (req.url ?? '/').split('?')[0]!;
    const auth = req.headers.authorization;
    const key = req.headers['x-api-key'];
    this.requests.push({ method: req.method!, path, ...(auth ? { authorization: auth } : {}), ...(typeof key === 'string' ? { apiKey: key } : {}) });
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = Buffer.concat(chunks);
    const json = (status: number, v: unknown) => void res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(v));
    if (req.method === 'GET' && path === '/health') return json(200, { ok: true });
    if (req.method === 'POST' && path === '/rpc') {
      const msg = JSON.parse(body.toString('utf8')) as { id: number; method: string; params: { event: string; payload?: Record<string, unknown> } };
      if (msg.method === 'bridge.hook') {
        this.hooks.push(msg.params);
        return json(200, { jsonrpc: '2.0', id: msg.id, result: { activity: 'working' } });
      }
      return json(200, { jsonrpc: '2.0', id: msg.id, error: { code: -32601, message: 'method not found' } });
    }
    if (req.method === 'POST' && (path === '/v1/messages' || path === '/v1/messages/count_tokens')) {
      const headers: Record<string, string> = { 'content-type': 'application/json', 'content-length': String(body.length), 'x-api-key': HOST_KEY };
      for (const h of ['anthropic-version', 'anthropic-beta']) if (typeof req.headers[h] === 'string') headers[h] = req.headers[h] as string;
      await new Promise<void>((resolve, reject) => {
        const up = request(`${upstream.url}${req.url}`, { method: 'POST', headers }, (r) => {
          res.writeHead(r.statusCode ?? 502, { 'content-type': r.headers['content-type'] ?? 'application/json' });
          r.pipe(res).once('finish', resolve);
          r.once('error', reject);
        });
        up.once('error', reject);
        up.end(body);
      });
      return;
    }
    json(403, { type: 'error', error: { type: 'permission_error', message: `berth bridge: ${req.method} ${path} is not relayed` } });
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((r) => this.server.close(() => r()));
  }
}

/**
 * images/base with Claude Code (the real CLI from npm), run as a session would be but without berthd:
 * the test serves the bridge socket itself. The container has no network at all (--network none), so
 * every byte Claude Code gets comes through /host/claude-bridge.sock and the entrypoint's forwarder.
 */
describe('images/base: Claude Code through the bridge socket', () => {
  const runId = randomUUID();
  const dirs: string[] = [];
  let upstream: ModelUpstream;
  let bridge: FakeBridge;
  let live: string;

  /** A session's container: no network, no capabilities, uid 1000, /host mounted read-only. */
  const session = (hostDir: string | null, cmd: string[], env: Record<string, string> = {}) => {
    const args = ['run', '--rm', '--network', 'none', '--cap-drop', 'ALL', '--security-opt', 'no-new-privileges', '--user', '1000:1000'];
    args.push('--label', `${TEST_LABEL}=true`, '--label', `${RUN_LABEL}=${runId}`);
    if (hostDir) args.push('-v', `${hostDir}:/host:ro`, '-e', 'CLAUDE_BRIDGE_SOCKET=/host/claude-bridge.sock');
    for (const [k, v] of Object.entries(env)) args.push('-e', `${k}=${v}`);
    return run('docker', [...args, IMAGE, ...cmd]);
  };
  const hostDir = async () => {
    const d = await tempDir('bt-bridge-');
    dirs.push(d);
    // mkdtemp makes it 0700; uid 1000 in the container must reach the socket in it.
    await chmod(d, 0o755);
    return d;
  };

  beforeAll(async () => {
    await ensureClaudeImage();
    upstream = await ModelUpstream.start({ answer: ANSWER });
    live = await hostDir();
    bridge = await FakeBridge.start(join(live, 'claude-bridge.sock'), upstream);
  }, 900_000);

  afterAll(async () => {
    const left = await docker('ps', '-aq', '--filter', `label=${RUN_LABEL}=${runId}`).catch(() => '');
    if (left) await docker('rm', '-f', ...left.split('\n')).catch(() => {});
    await bridge?.close();
    await upstream?.close();
    for (const d of dirs) await rm(d, { recursive: true, force: true });
    // The image stays (labelled dev.berth.test, tagged once): removing it would drop the layer cache
    // (the classic builder deletes its untagged parents), and the next run would fetch Claude Code again.
  });

  it('claude -p answers from the upstream with --network none, reporting its hooks to the bridge', async () => {
    const r = await session(live, ['claude', '-p', 'say hi', '--output-format', 'json']);
    expect(r.code, `stdout: ${r.stdout}\nstderr: ${r.stderr}`).toBe(0);
    const out = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { type: string; is_error: boolean; result: string };
    expect(out).toMatchObject({ type: 'result', is_error: false, result: ANSWER });

    // What Claude Code sent on the socket (the forwarder passes it through unchanged).
    const paths = [...new Set(bridge.requests.map((q) => `${q.method} ${q.path}`))];
    console.info(`bridge requests: ${JSON.stringify(bridge.requests.map((q) => `${q.method} ${q.path}`))}; upstream saw: ${JSON.stringify(upstream.seen.map((s) => [s.path, s.model, s.stream]))}`);
    expect(paths).toContain('POST /v1/messages');
    expect(paths.filter((p) => p !== 'GET /health' && p !== 'POST /rpc' && !p.startsWith('POST /v1/messages'))).toEqual([]);
    // The container's credential is the image's placeholder; the upstream saw only the host's.
    expect(bridge.requests.filter((q) => q.path.startsWith('/v1/')).map((q) => q.authorization ?? q.apiKey)).toEqual(
      expect.arrayContaining(['Bearer berth-bridge']),
    );
    expect(upstream.messages().length).toBeGreaterThan(0);
    expect(new Set(upstream.seen.map((s) => s.headers['x-api-key']))).toEqual(new Set([HOST_KEY]));

    console.info(`hook events: ${JSON.stringify(bridge.hooks.map((h) => h.event))}`);
    const events = bridge.hooks.map((h) => h.event);
    expect(events).toEqual(expect.arrayContaining(['SessionStart', 'UserPromptSubmit', 'Stop']));
    for (const h of bridge.hooks) {
      expect(h.payload?.hook_event_name).toBe(h.event);
      expect(Object.keys(h.payload ?? {}).every((k) => ['hook_event_name', 'session_id', 'message', 'notification_type', 'tool_name', 'stop_hook_active'].includes(k))).toBe(true);
      expect(JSON.stringify(h)).not.toContain('say hi');
    }
    expect(new Set(bridge.hooks.map((h) => h.payload?.session_id)).size).toBe(1);
  });

  it('without a socket file: exits 2 before Claude Code starts, saying the socket is missing and what to check', async () => {
    const r = await session(await hostDir(), ['claude', '-p', 'say hi']);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain('/host/claude-bridge.sock does not exist');
    expect(r.stderr).toContain('`berth status`');
  });

  it('with a stale socket (its berthd killed -9): exits 2, saying berthd is not answering and that it comes back by itself', async () => {
    const dir = await hostDir();
    const socket = join(dir, 'claude-bridge.sock');
    // A server that dies without closing leaves its socket file behind, like a berthd killed -9.
    const script = `require('net').createServer().listen(${JSON.stringify(socket)}, () => { require('fs').chmodSync(${JSON.stringify(socket)}, 0o666); process.kill(process.pid, 'SIGKILL'); })`;
    await run(process.execPath, ['-e', script]);
    const r = await session(dir, ['claude', '-p', 'say hi']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('berthd is not answering on the Claude bridge /host/claude-bridge.sock');
    expect(r.stderr).toContain('Is berthd running? `berth status` on the host');
    expect(r.stderr).toContain('no container restart needed');

    // What reaches the loopback port then (an agent that skips the wrapper) is a Messages API error.
    const curl = await session(dir, ['curl', '-sS', '-w', '\n%{http_code}', '-X', 'POST', '-d', '{}', 'http://127.0.0.1:3998/v1/messages']);
    const [body, status] = curl.stdout.split('\n');
    expect(status).toBe('502');
    expect(JSON.parse(body!)).toEqual({ type: 'error', error: { type: 'api_error', message: expect.stringMatching(/^berth bridge: berthd is not answering/) } });
  });

  it('outside berth (no CLAUDE_BRIDGE_SOCKET): exits 2, saying so and how to run it', async () => {
    const r = await session(null, ['claude', '-p', 'say hi']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('this container was not started by berth');
    expect(r.stderr).toContain('Set ANTHROPIC_API_KEY');
    expect(r.stderr).toContain('`berth start`');
  });

  it('other agents are untouched: their exit code, HOME, and no forwarder without a bridge', async () => {
    const r = await session(null, ['sh', '-c', 'echo "$HOME $(id -u) $ANTHROPIC_BASE_URL"; curl -s -o /dev/null http://127.0.0.1:3998/ || echo "no forwarder"; exit 7']);
    expect(r.code).toBe(7);
    expect(r.stdout.split('\n')).toEqual(['/agent 1000 http://127.0.0.1:3998', 'no forwarder', '']);
    const v = await session(live, ['claude', '--version']);
    expect(v).toMatchObject({ code: 0, stdout: expect.stringMatching(/^\d+\.\d+\.\d+ \(Claude Code\)/) });
  });
});
