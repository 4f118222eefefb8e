import { chmodSync, existsSync, lstatSync, mkdirSync, renameSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { join } from 'node:path';
import {
  BRIDGE_SOCKET_NAME,
  BerthError,
  type ActivityState,
  type BridgeMethods,
  type BridgeRequestRecord,
  type SessionActivity,
} from '@berth/client-sdk/protocol';
import type { EventBus } from '../events/bus.js';
import type { Logger } from '../log.js';
import type { Clock } from '../shared/clock.js';
import type { SessionRecord, SessionsRepo } from '../store/sessions.js';
import type { UsageRepo } from '../store/usage.js';
import type { AuditLog } from './audit.js';
import { sendApiError, type ModelRelay, type RelayResult } from './relay.js';
import { costNanos } from './usage.js';

/** The Messages API's own request limit. */
const MAX_MODEL_BODY = 32 * 1024 * 1024;
const MAX_RPC_BODY = 1024 * 1024;
/** Written in the bridge directory (the container's /host) when a graceful stop is asked for. */
export const STOP_FILE = 'stop-requested';
/**
 * Path asked → the Messages API path relayed. Clients whose base URL includes the version (the Vercel
 * AI SDK's `@ai-sdk/anthropic`, so task-master-ai and OpenCode) post `/messages` to the same
 * ANTHROPIC_BASE_URL that Claude Code posts `/v1/messages` to.
 */
const MODEL_PATHS = new Map([
  ['/v1/messages', '/v1/messages'],
  ['/v1/messages/count_tokens', '/v1/messages/count_tokens'],
  ['/messages', '/v1/messages'],
  ['/messages/count_tokens', '/v1/messages/count_tokens'],
]);
/** Model requests one session may have open at once (each holds its body): more get 429, which Claude Code retries. */
const MAX_OPEN_PER_SESSION = 16;
/** Request bodies held in berthd at once, all sessions together. */
const MAX_HELD_BYTES = 512 * 1024 * 1024;

/** Hook event → what it says the agent is doing. */
const HOOK_STATE: Record<string, ActivityState> = {
  SessionStart: 'idle',
  UserPromptSubmit: 'working',
  PreToolUse: 'working',
  PostToolUse: 'working',
  SubagentStop: 'working',
  PostToolUseFailure: 'working',
  PermissionDenied: 'working',
  // The permission dialog is on screen (Notification about it comes seconds later, if at all).
  PermissionRequest: 'waiting-input',
  // An MCP server asks the person for input.
  Elicitation: 'waiting-input',
  Notification: 'waiting-input',
  Stop: 'idle',
  SessionEnd: 'idle',
};

export interface BridgeDeps {
  home: string;
  sessions: SessionsRepo;
  usage: UsageRepo;
  relay: ModelRelay;
  audit: AuditLog;
  bus: EventBus;
  log: Logger;
  clock: Clock;
  /** A Claude Code turn ended in a session asked to stop gracefully: it is stopped now. */
  onTurnEnded?: (id: string) => void;
  /** The task methods (tasks.*) agents call on their bridge, and the lease their traffic extends. */
  tasks?: {
    call(s: SessionRecord, method: string, params: Record<string, unknown>): unknown;
    touch(sessionId: string): void;
  };
}

class BodyTooLarge extends Error {}

type Ident = Pick<SessionRecord, 'id' | 'name' | 'budgetTokens'>;

/**
 * berthd's side of every session's Claude bridge: a Unix socket per session in
 * `$BERTH_HOME/bridge/sessions/<id>/`, a directory the session's container mounts read-only at
 * /host. The socket a request arrives on is the only thing that says which session sent it; a
 * container sees its own directory and nothing else of berth's. A berthd that restarts makes the
 * socket again in the same directory, so the container finds it where it was.
 */
export class BridgeHost {
  private readonly servers = new Map<string, Server>();
  private readonly budgetWarned = new Map<string, number>();
  /** What a model call needs of its session, which does not change while the session lives. */
  private readonly idents = new Map<string, Ident>();
  private readonly openCalls = new Map<string, number>();
  private heldBytes = 0;
  private readonly root: string;

  constructor(private readonly d: BridgeDeps) {
    this.root = join(d.home, 'bridge', 'sessions');
    for (const dir of [join(d.home, 'bridge'), this.root]) {
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      chmodSync(dir, 0o700);
    }
  }

  /** The host directory a session's container mounts at /host. */
  dirOf(id: string): string {
    if (!/^[0-9a-f]{12}$/.test(id)) throw new BerthError('INTERNAL_ERROR', `not a session id: ${JSON.stringify(id)}`);
    return join(this.root, id);
  }

  /**
   * Writes (text) or removes (null) a file the session's container reads in /host. Tasks do this on
   * every claim and completion, so it costs the fewest system calls: the directory is made only
   * when it is missing, and a removal is one unlink.
   */
  hostFile(id: string, name: string, text: string | null): void {
    const dir = this.dirOf(id);
    const file = join(dir, name);
    try {
      if (text === null) {
        // Mostly there is none (only a pool's sessions get one): no exception to build for that.
        if (!existsSync(file)) return;
        try {
          return unlinkSync(file);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
          throw err;
        }
      }
      try {
        writeFileSync(`${file}.tmp`, text, { mode: 0o644 });
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
        mkdirSync(dir, { recursive: true, mode: 0o755 });
        writeFileSync(`${file}.tmp`, text, { mode: 0o644 });
      }
      renameSync(`${file}.tmp`, file);
    } catch (err) {
      this.d.log.warn({ sessionId: id, file: name, err: (err as Error).message }, 'Cannot write to the session bridge directory');
    }
  }

  /** Tells the agent (scripted ones read /host/stop-requested) to finish and exit before `deadline`. */
  requestStop(id: string, deadline: string): void {
    try {
      mkdirSync(this.dirOf(id), { recursive: true, mode: 0o755 });
      writeFileSync(join(this.dirOf(id), STOP_FILE), `${JSON.stringify({ deadline })}\n`, { mode: 0o644 });
    } catch (err) {
      this.d.log.warn({ sessionId: id, err: (err as Error).message }, 'Cannot write stop-requested');
    }
  }

  /** Serves the session's bridge (idempotent); returns the directory to mount. */
  async ensure(id: string): Promise<string> {
    const dir = this.dirOf(id);
    // A session (re)started after a graceful stop is no longer asked to stop.
    if (!this.d.sessions.get(id)?.gracefulDeadline) rmSync(join(dir, STOP_FILE), { force: true });
    if (this.servers.get(id)?.listening) return dir;
    mkdirSync(dir, { recursive: true, mode: 0o755 });
    // The container's user may be anyone: the directory must be traversable, the socket connectable.
    // Nothing else can reach it: $BERTH_HOME/bridge is berthd's alone (0700).
    chmodSync(dir, 0o755);
    const path = join(dir, BRIDGE_SOCKET_NAME);
    try {
      if (lstatSync(path)) unlinkSync(path); // left by a berthd that was killed
    } catch {
      // none
    }
    const server = createServer((req, res) => void this.handle(id, req, res));
    server.keepAliveTimeout = 60_000;
    // A body that trickles in holds memory: the whole request must arrive within a minute.
    server.requestTimeout = 60_000;
    server.headersTimeout = 30_000;
    server.on('clientError', (_err, socket) => socket.destroy());
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, () => {
        server.off('error', reject);
        resolve();
      });
    });
    chmodSync(path, 0o666);
    this.servers.set(id, server);
    return dir;
  }

  /** Stops serving the session's bridge; `forget` also removes its directory (the session is gone). */
  async close(id: string, opts: { forget?: boolean } = {}): Promise<void> {
    const server = this.servers.get(id);
    this.servers.delete(id);
    this.idents.delete(id);
    if (server) {
      const closed = new Promise<void>((r) => server.close(() => r()));
      server.closeAllConnections();
      await closed;
    }
    this.d.audit.close(id);
    if (opts.forget) rmSync(this.dirOf(id), { recursive: true, force: true });
  }

  async closeAll(): Promise<void> {
    await Promise.all([...this.servers.keys()].map((id) => this.close(id)));
    this.d.relay.close();
    this.d.audit.closeAll();
  }

  get open(): number {
    return this.servers.size;
  }

  private async handle(id: string, req: IncomingMessage, res: ServerResponse): Promise<void> {
    const started = performance.now();
    const url = new URL(req.url ?? '/', 'http://bridge');
    const path = url.pathname;
    const method = req.method ?? 'GET';
    try {
      const s = this.ident(id);
      this.d.tasks?.touch(id);
      if (method === 'GET' && path === '/health') return json(res, 200, { ok: true });
      if (method === 'POST' && path === '/rpc') return await this.rpc(this.record(id), req, res);
      const relayed = method === 'POST' ? MODEL_PATHS.get(path) : undefined;
      if (relayed) return await this.model(s, relayed, url.search, req, res, started);
      req.resume();
      const shown = JSON.stringify(path.slice(0, 200));
      this.d.log.warn({ sessionId: id, method: method.slice(0, 16), path: shown }, 'Bridge refused a request outside the allow-list');
      this.audit(s, { method, path, status: 403, error: 'BRIDGE_PATH_FORBIDDEN', started });
      sendApiError(res, new BerthError('BRIDGE_PATH_FORBIDDEN', `${method.slice(0, 16)} ${shown} is not relayed by the bridge`));
    } catch (err) {
      if (err instanceof BodyTooLarge) {
        this.audit(this.ident(id), { method, path, status: 413, error: 'BRIDGE_REQUEST_TOO_LARGE', started });
        this.d.log.warn({ sessionId: id, path: JSON.stringify(path.slice(0, 200)) }, 'Bridge refused an oversized request');
        res.setHeader('connection', 'close');
        sendApiError(res, new BerthError('BRIDGE_REQUEST_TOO_LARGE', `request body over ${path === '/rpc' ? MAX_RPC_BODY : MAX_MODEL_BODY} bytes`));
        req.destroy();
        return;
      }
      if (err instanceof BerthError) return sendApiError(res, err);
      this.d.log.error({ sessionId: id, err }, 'Bridge request failed');
      sendApiError(res, new BerthError('INTERNAL_ERROR', (err as Error).message));
    }
  }

  private record(id: string): SessionRecord {
    const s = this.d.sessions.get(id);
    if (!s) throw new BerthError('SESSION_NOT_FOUND', 'this bridge belongs to a session that no longer exists');
    return s;
  }

  private ident(id: string): Ident {
    let i = this.idents.get(id);
    if (!i) {
      const { name, budgetTokens } = this.record(id);
      i = { id, name, budgetTokens };
      this.idents.set(id, i);
    }
    return i;
  }

  /** BUDGET_EXCEEDED when the session has used its budget (the event at most every 10 s). */
  private checkBudget(s: Ident): void {
    if (s.budgetTokens === null) return;
    const used = this.d.usage.tokens(s.id);
    if (used < s.budgetTokens) return;
    const now = this.d.clock.now().getTime();
    if (now - (this.budgetWarned.get(s.id) ?? 0) > 10_000) {
      this.budgetWarned.set(s.id, now);
      this.d.bus.publish('session.budget', { id: s.id, name: s.name, code: 'BUDGET_EXCEEDED', budgetTokens: s.budgetTokens, usedTokens: used });
    }
    throw new BerthError('BUDGET_EXCEEDED', `session ${s.name} used ${used} of its budget of ${s.budgetTokens} tokens`, {
      details: { budgetTokens: s.budgetTokens, usedTokens: used },
    });
  }

  private async model(s: Ident, path: string, search: string, req: IncomingMessage, res: ServerResponse, started: number): Promise<void> {
    const messages = path === '/v1/messages';
    const open = this.openCalls.get(s.id) ?? 0;
    if (open >= MAX_OPEN_PER_SESSION) {
      req.resume();
      this.audit(s, { method: 'POST', path, status: 429, error: 'TOO_MANY_REQUESTS', started });
      res.writeHead(429, { 'content-type': 'application/json', 'retry-after': '1' });
      res.end(JSON.stringify({ type: 'error', error: { type: 'rate_limit_error', message: `berth: this session has ${open} model requests open at once; wait for them` } }));
      return;
    }
    this.openCalls.set(s.id, open + 1);
    let held = 0;
    try {
      if (messages) {
        try {
          this.checkBudget(s);
        } catch (err) {
          req.resume();
          this.audit(s, { method: 'POST', path, status: 403, error: 'BUDGET_EXCEEDED', started });
          throw err;
        }
      }
      const declared = Number(req.headers['content-length']) || 0;
      if (this.heldBytes + declared > MAX_HELD_BYTES) {
        req.resume();
        res.writeHead(429, { 'content-type': 'application/json', 'retry-after': '1' });
        res.end(JSON.stringify({ type: 'error', error: { type: 'rate_limit_error', message: 'berth: the bridge holds too many request bodies right now; retry' } }));
        return;
      }
      const body = await readBody(req, MAX_MODEL_BODY);
      held = body.length;
      this.heldBytes += held;
      await this.forward(s, path, search, req, res, started, body, messages);
    } finally {
      this.heldBytes -= held;
      const n = (this.openCalls.get(s.id) ?? 1) - 1;
      if (n > 0) this.openCalls.set(s.id, n);
      else this.openCalls.delete(s.id);
    }
  }

  private async forward(s: Ident, path: string, search: string, req: IncomingMessage, res: ServerResponse, started: number, body: Buffer, messages: boolean): Promise<void> {
    let asked: string | null = null;
    try {
      const m = (JSON.parse(body.toString('utf8')) as { model?: unknown }).model;
      if (typeof m === 'string') asked = m.slice(0, 200);
    } catch {
      // not JSON: the upstream answers it
    }
    const settle = (r: RelayResult) => {
      const model = (r.model ?? asked ?? 'unknown').slice(0, 200);
      const t = r.tokens;
      if (messages && ((r.status >= 200 && r.status < 300) || t.input + t.output + t.cacheRead + t.cacheCreation > 0)) {
        this.d.usage.add(s.id, model, {
          requests: 1,
          inputTokens: t.input,
          outputTokens: t.output,
          cacheReadTokens: t.cacheRead,
          cacheCreationTokens: t.cacheCreation,
          costNanos: costNanos(model, t),
        });
        const usage = this.d.sessions.usage(s.id);
        if (usage) this.d.bus.publish('session.usage', { id: s.id, name: s.name, model, usage });
      }
      this.audit(s, { method: 'POST', path, model, status: r.status, error: r.error, started, queuedMs: r.queuedMs, tokens: messages ? t : undefined });
    };
    await this.d.relay.relay(s.id, path + search, req, res, body, { ...(messages ? { admit: () => this.checkBudget(s) } : {}), settle });
  }

  private async rpc(s: SessionRecord, req: IncomingMessage, res: ServerResponse): Promise<void> {
    const body = await readBody(req, MAX_RPC_BODY);
    let call: { jsonrpc?: unknown; id?: unknown; method?: unknown; params?: unknown };
    try {
      call = JSON.parse(body.toString('utf8'));
    } catch {
      return rpcError(res, null, new BerthError('PARSE_ERROR', 'Parse error: the body is not one JSON document'));
    }
    const id = typeof call?.id === 'string' || typeof call?.id === 'number' ? call.id : null;
    if (!call || typeof call !== 'object' || call.jsonrpc !== '2.0' || typeof call.method !== 'string') {
      return rpcError(res, id, new BerthError('INVALID_REQUEST', 'Invalid Request: expected {"jsonrpc":"2.0","method":"...","params":{...},"id":...}'));
    }
    const params = (call.params && typeof call.params === 'object' && !Array.isArray(call.params) ? call.params : {}) as Record<string, unknown>;
    let result: unknown;
    if (call.method === 'bridge.hello') result = this.hello(s);
    else if (call.method === 'bridge.hook') {
      if (typeof params.event !== 'string' || !params.event || params.event.length > 64) {
        return rpcError(res, id, new BerthError('INVALID_PARAMS', 'Invalid params: event must be a hook event name'));
      }
      const activity = this.hook(s, params.event, params.payload);
      const asked = s.desired === 'stopped' && s.gracefulDeadline ? { deadline: s.gracefulDeadline } : null;
      // The unit of work a graceful stop waits for is the agent's turn: it ended, so stop now.
      if (asked && (params.event === 'Stop' || params.event === 'SessionEnd')) this.d.onTurnEnded?.(s.id);
      result = { activity, stopRequested: asked };
    } else if (call.method.startsWith('tasks.') && this.d.tasks) {
      try {
        result = this.d.tasks.call(s, call.method, params);
      } catch (err) {
        if (!(err instanceof BerthError)) throw err;
        return rpcError(res, id, err);
      }
    } else return rpcError(res, id, new BerthError('METHOD_NOT_FOUND', `Method not found: ${JSON.stringify(call.method.slice(0, 64))} is not served on the bridge`));
    return json(res, 200, { jsonrpc: '2.0', id, result });
  }

  private hello(s: SessionRecord): BridgeMethods['bridge.hello']['result'] {
    return {
      session: { id: s.id, name: s.name },
      project: s.project,
      agent: s.agent,
      branch: s.branch,
      limits: { memory: `${Math.round(s.spec.memoryBytes / 1024 / 1024)}m`, cpus: s.spec.nanoCpus / 1e9, pids: s.spec.pidsLimit },
      budgetTokens: s.budgetTokens,
      usage: this.d.sessions.usage(s.id),
      stopRequested: s.gracefulDeadline ? { deadline: s.gracefulDeadline } : null,
    };
  }

  /** A Claude Code hook fired in the session: the activity it implies, published when it changes. */
  private hook(s: SessionRecord, event: string, payload: unknown): SessionActivity {
    const state = HOOK_STATE[event];
    const before = s.activity;
    if (!state) return before ?? { state: 'starting', since: s.createdAt, reason: null };
    const p = (payload && typeof payload === 'object' ? payload : {}) as Record<string, unknown>;
    const tool = typeof p.tool_name === 'string' ? p.tool_name : '';
    const detail = typeof p.message === 'string' ? p.message : event === 'PermissionRequest' && tool ? `permission to use ${tool}` : tool;
    const reason = `hook:${event}${detail ? `: ${detail.replace(/[\u0000-\u001f\u007f]/g, ' ').slice(0, 200)}` : ''}`;
    const now = this.d.clock.now().toISOString();
    const activity: SessionActivity = { ...before, state, since: before?.state === state ? before.since : now, reason, lastHookAt: now };
    this.d.sessions.setActivity(s.id, activity);
    // A change of state only: one wait is one event (and one notification), whichever hooks tell of it.
    if (before?.state !== state) {
      this.d.bus.publish('session.activity', { id: s.id, name: s.name, activity, previous: before?.state ?? null });
    }
    return activity;
  }

  private audit(
    s: Ident,
    r: { method: string; path: string; model?: string | null; status: number; error: string | null; started: number; queuedMs?: number; tokens?: { input: number; output: number; cacheRead: number; cacheCreation: number } | undefined },
  ): void {
    const rec: BridgeRequestRecord = {
      ts: this.d.clock.now().toISOString(),
      session: s.id,
      method: r.method.slice(0, 16),
      path: r.path.slice(0, 200),
      model: r.model ?? null,
      status: r.status,
      error: r.error,
      inputTokens: r.tokens?.input ?? 0,
      outputTokens: r.tokens?.output ?? 0,
      cacheReadTokens: r.tokens?.cacheRead ?? 0,
      cacheCreationTokens: r.tokens?.cacheCreation ?? 0,
      durationMs: Math.round(performance.now() - r.started),
      queuedMs: r.queuedMs ?? 0,
    };
    try {
      this.d.audit.append(rec);
    } catch (err) {
      this.d.log.warn({ sessionId: s.id, err: (err as Error).message }, 'Cannot write the bridge audit log');
    }
  }
}

async function readBody(req: IncomingMessage, max: number): Promise<Buffer> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > max) throw new BodyTooLarge();
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of req) {
    n += (c as Buffer).length;
    if (n > max) throw new BodyTooLarge();
    chunks.push(c as Buffer);
  }
  return Buffer.concat(chunks);
}

/** A JSON-RPC error as berthd's own socket sends one: the numeric code, and the string code in data. */
function rpcError(res: ServerResponse, id: string | number | null, err: BerthError): void {
  json(res, 200, { jsonrpc: '2.0', id, error: { code: err.rpcCode, message: err.message, data: err.toData() } });
}

function json(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}
