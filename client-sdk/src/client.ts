import { existsSync, readFileSync, statSync } from 'node:fs';
import { Agent as HttpAgent, request, type IncomingMessage, type RequestOptions } from 'node:http';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { JSONRPCClient, JSONRPCErrorException, createJSONRPCErrorResponse } from 'json-rpc-2.0';
import {
  BerthError,
  fromWireError,
  streamRoutes,
  type BerthEvent,
  type WireError,
  type HealthReport,
  type ImageBuildProgress,
  type DefaultImagesResult,
  type ImageBuildResult,
  type LogLine,
  type MethodName,
  type ParamsOf,
  type ResultOf,
  type ExecStreamParams,
  EXEC_UPGRADE,
  execQuery,
  longRunningMethods,
} from './protocol/index.js';
import { followLogs, type LogOptions } from './logs.js';
import { execStreamOn, type ExecStream } from './exec.js';

export const SYSTEM_SOCKET = '/run/berth/berth.sock';

/**
 * Where berthd listens: $BERTH_SOCKET, else $BERTH_HOME/berth.sock, else ~/.berth/berth.sock;
 * when that does not exist but the system service's socket does, the system one.
 */
export function defaultSocketPath(env: NodeJS.ProcessEnv = process.env): string {
  if (env.BERTH_SOCKET) return env.BERTH_SOCKET;
  const home = env.BERTH_HOME || join(env.HOME || homedir(), '.berth');
  const user = join(home, 'berth.sock');
  if (!env.BERTH_HOME && !existsSync(user) && existsSync(SYSTEM_SOCKET)) return SYSTEM_SOCKET;
  return user;
}

export interface ClientOptions {
  /** Default: defaultSocketPath(). */
  socketPath?: string;
  /** Per-call timeout in ms (default 60 s); image builds wait as long as they take. */
  timeoutMs?: number;
  /**
   * How long to keep connecting while berthd is starting (its pid file names a live berthd but
   * its socket is not bound yet), in ms; default 10 s. With no berthd starting, a missing daemon
   * fails at once with DAEMON_UNREACHABLE.
   */
  startWaitMs?: number;
}

/**
 * Whether a berthd is starting on `socketPath`: the pid file it writes before binding names a live
 * process that is berthd (where /proc says so).
 */
export function daemonStarting(socketPath: string): boolean {
  let pid: number;
  try {
    pid = Number(readFileSync(`${socketPath}.pid`, 'utf8').trim());
  } catch {
    return false;
  }
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'latin1').includes('berthd');
  } catch {
    return true; // no /proc (macOS): a live pid is the best we know
  }
}

const NOT_LISTENING = new Set(['ENOENT', 'ECONNREFUSED']);

/** The longest request path of an exec stream (its command and environment are in the query). */
const MAX_EXEC_PATH_BYTES = 12 * 1024;

type Call<M extends MethodName> = ParamsOf<M> extends Record<string, never>
  ? (params?: ParamsOf<M>) => Promise<ResultOf<M>>
  : (params: ParamsOf<M>) => Promise<ResultOf<M>>;

/**
 * Typed client for berthd's JSON-RPC API over its Unix socket. Every method of the protocol is
 * here once; failures reject with BerthError carrying the stable `code`.
 */
export class BerthClient {
  readonly socketPath: string;
  private readonly timeoutMs: number;
  private readonly startWaitMs: number;
  private readonly agent = new HttpAgent({ keepAlive: true, maxSockets: 64 });
  private readonly rpc: JSONRPCClient;

  constructor(opts: ClientOptions = {}) {
    this.socketPath = opts.socketPath ?? defaultSocketPath();
    this.timeoutMs = opts.timeoutMs ?? 60_000;
    this.startWaitMs = opts.startWaitMs ?? 10_000;
    this.rpc = new JSONRPCClient(async (payload) => {
      const requests = Array.isArray(payload) ? payload : [payload];
      let text: string;
      try {
        const patient = requests.some((r) => longRunningMethods.has(r.method as MethodName));
        text = (await this.http('POST', '/rpc', JSON.stringify(payload), patient ? 0 : this.timeoutMs)).text;
      } catch (err) {
        if (!(err instanceof BerthError)) throw err;
        // Keep the transport failure's code: json-rpc-2.0 would flatten a thrown error to a message.
        for (const r of requests) {
          if (r.id !== undefined && r.id !== null) this.rpc.receive(createJSONRPCErrorResponse(r.id, err.rpcCode, err.message, err.toData()));
        }
        return;
      }
      if (!text) return;
      const reply = JSON.parse(text) as { id?: unknown; error?: { code: number; message: string; data?: unknown } };
      if (!Array.isArray(reply) && reply.id === null && reply.error) {
        // An error about the whole request (too large, berthd failed to start): every call gets it.
        for (const r of requests) {
          if (r.id !== undefined && r.id !== null) this.rpc.receive(createJSONRPCErrorResponse(r.id, reply.error.code, reply.error.message, reply.error.data));
        }
        return;
      }
      this.rpc.receive(reply as never);
    });
  }

  readonly daemon = {
    status: this.method('daemon.status'),
  };

  readonly projects = {
    add: this.method('projects.add'),
    list: this.method('projects.list'),
    get: this.method('projects.get'),
    update: this.method('projects.update'),
    remove: this.method('projects.remove'),
  };

  readonly agents = {
    define: this.method('agents.define'),
    list: this.method('agents.list'),
    get: this.method('agents.get'),
    remove: this.method('agents.remove'),
  };

  readonly sessions = {
    start: this.method('sessions.start'),
    list: this.method('sessions.list'),
    get: this.method('sessions.get'),
    stop: this.method('sessions.stop'),
    restart: this.method('sessions.restart'),
    remove: this.method('sessions.remove'),
    logs: this.method('sessions.logs'),
    exec: this.method('sessions.exec'),
    /**
     * A command attached to a running session over the `sessions.exec` stream: its stdin, its
     * output as it comes, a terminal with `tty`, its exit code; no deadline unless `timeoutSec`.
     * Resolves once berthd has started it; a refusal (SESSION_NOT_FOUND, SESSION_NOT_RUNNING,
     * INVALID_PARAMS, EXEC_TTY_UNSUPPORTED ...) rejects.
     */
    execStream: (params: ExecStreamParams): Promise<ExecStream> => this.execStream(params),
    status: this.method('sessions.status'),
    diff: this.method('sessions.diff'),
    merge: this.method('sessions.merge'),
    usage: this.method('sessions.usage'),
    requests: this.method('sessions.requests'),
  };

  readonly images = {
    list: this.method('images.list'),
    remove: this.method('images.remove'),
    build: this.method('images.build'),
    buildDefaults: this.method('images.buildDefaults'),
  };

  /**
   * images.build over POST /images/build: the same build, with each output line delivered to
   * `onProgress` as it happens. Resolves with the result; rejects with IMAGE_BUILD_FAILED & co.
   */
  buildImage(params: ParamsOf<'images.build'>, onProgress: (p: ImageBuildProgress) => void): Promise<ImageBuildResult> {
    return this.streamed(streamRoutes['images.build'].path, params, onProgress);
  }

  /** images.buildDefaults over POST /images/build-defaults, with progress like buildImage. */
  buildDefaultImages(params: ParamsOf<'images.buildDefaults'>, onProgress: (p: ImageBuildProgress) => void): Promise<DefaultImagesResult> {
    return this.streamed(streamRoutes['images.buildDefaults'].path, params, onProgress);
  }

  private async streamed<R>(path: string, params: unknown, onProgress: (p: ImageBuildProgress) => void): Promise<R> {
    const body = JSON.stringify(params);
    const res = await this.send({ path, method: 'POST', headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, body);
    let result: R | null = null;
    for await (const raw of createInterface({ input: res, crlfDelay: Infinity })) {
      if (!raw) continue;
      const msg = JSON.parse(raw) as { progress?: ImageBuildProgress; result?: R; error?: WireError };
      if (msg.progress) onProgress(msg.progress);
      if (msg.result) result = msg.result;
      if (msg.error) throw fromWireError(msg.error, 'build failed');
    }
    if (!result) throw new BerthError('DAEMON_UNREACHABLE', `berthd closed the ${path} stream before the result`, { details: { socket: this.socketPath } });
    return result;
  }

  private async execStream(params: ExecStreamParams): Promise<ExecStream> {
    const path = `${streamRoutes['sessions.exec'].path.replace(':id', encodeURIComponent(params.id))}?${execQuery(params)}`;
    // node's HTTP server takes request heads up to 16 KiB; past that berthd would answer 431 with no body.
    if (Buffer.byteLength(path) > MAX_EXEC_PATH_BYTES) {
      throw new BerthError('INVALID_PARAMS', `the command and environment of an exec stream take at most ${MAX_EXEC_PATH_BYTES} bytes (URL-encoded); send a long script through stdin instead`, {
        details: { bytes: Buffer.byteLength(path), max: MAX_EXEC_PATH_BYTES },
      });
    }
    const giveUpAt = Date.now() + this.startWaitMs;
    for (let pause = 25; ; pause = Math.min(pause * 2, 200)) {
      try {
        return await new Promise<ExecStream>((resolve, reject) => {
          const req = request({
            agent: false,
            socketPath: this.socketPath,
            path,
            method: 'GET',
            headers: { connection: 'Upgrade', upgrade: EXEC_UPGRADE },
          });
          req.on('upgrade', (_res, socket, head) => resolve(execStreamOn(socket, head)));
          req.on('response', (res) => {
            const chunks: Buffer[] = [];
            res.on('data', (c: Buffer) => chunks.push(c));
            res.on('error', reject);
            res.on('end', () => {
              let e: WireError | undefined;
              try {
                e = (JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}') as { error?: WireError }).error;
              } catch {
                // not JSON: the status says it
              }
              reject(fromWireError(e, `HTTP ${res.statusCode}`));
            });
          });
          req.on('error', reject);
          req.end();
        });
      } catch (err) {
        if (err instanceof BerthError) throw err;
        const code = (err as NodeJS.ErrnoException).code;
        if (!(code && NOT_LISTENING.has(code) && Date.now() < giveUpAt && daemonStarting(this.socketPath))) throw this.transportError(err as Error);
        await new Promise((r) => setTimeout(r, pause));
      }
    }
  }

  /** Any method by name (for generic tooling); prefer the typed members above. */
  async call<M extends MethodName>(method: M, params?: ParamsOf<M>): Promise<ResultOf<M>> {
    try {
      const rpc = longRunningMethods.has(method) ? this.rpc : this.rpc.timeout(this.timeoutMs);
      return (await rpc.request(method, params ?? {})) as ResultOf<M>;
    } catch (err) {
      throw toBerthError(err);
    }
  }

  /** GET /health: the daemon's named checks. Resolves for both 200 and 503. */
  async health(): Promise<HealthReport> {
    const res = await this.http('GET', '/health');
    return JSON.parse(res.text) as HealthReport;
  }

  /**
   * Lifecycle events from GET /events, until `signal` aborts or the daemon goes away.
   * `since` replays buffered events with a greater `seq`.
   */
  async *events(opts: { since?: number; signal?: AbortSignal } = {}): AsyncGenerator<BerthEvent> {
    const base = streamRoutes.events.path;
    const path = opts.since !== undefined ? `${base}?since=${opts.since}` : base;
    const res = await this.send({ path, method: 'GET', ...(opts.signal ? { signal: opts.signal } : {}) });
    const lines = createInterface({ input: res, crlfDelay: Infinity });
    try {
      for await (const line of lines) {
        if (!line) continue;
        const e = JSON.parse(line) as BerthEvent | { type: 'hello' | 'ping' };
        if (e.type === 'hello' || e.type === 'ping') continue;
        yield e as BerthEvent;
      }
    } catch (err) {
      if ((err as Error).name !== 'AbortError') throw err;
    } finally {
      res.destroy();
    }
  }

  /**
   * Log lines of a session from GET /sessions/:id/logs. With `follow`, keeps going until `signal`
   * aborts or the session's container ends; if berthd restarts meanwhile, it reconnects and resumes
   * after the last line it delivered (lines with the same timestamp as that one are not repeated).
   */
  logs(id: string, opts: LogOptions = {}): AsyncGenerator<LogLine> {
    return followLogs((o) => this.send(o), id, opts);
  }

  close(): void {
    this.rpc.rejectAllPendingRequests('client closed');
    this.agent.destroy();
  }

  [Symbol.dispose](): void {
    this.close();
  }

  private method<M extends MethodName>(name: M): Call<M> {
    return ((params?: ParamsOf<M>) => this.call(name, params)) as Call<M>;
  }

  /** `timeoutMs` 0 waits for as long as the daemon works. */
  private async http(method: 'GET' | 'POST', path: string, body?: string, timeoutMs = this.timeoutMs): Promise<{ status: number; text: string }> {
    const res = await this.send(
      {
        path,
        method,
        agent: this.agent,
        headers: body !== undefined ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } : {},
      },
      body,
      timeoutMs,
    );
    return new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
  }

  /**
   * One request on the socket, answered with its response head. While berthd is starting and has
   * not bound its socket yet, connecting is retried (nothing was sent, so nothing runs twice).
   */
  private async send(options: RequestOptions, body?: string, timeoutMs = 0): Promise<IncomingMessage> {
    const giveUpAt = Date.now() + this.startWaitMs;
    for (let pause = 25; ; pause = Math.min(pause * 2, 200)) {
      try {
        return await new Promise<IncomingMessage>((resolve, reject) => {
          // Streams get a connection of their own (agent: false): Node's global agent closes a socket
          // that is idle for 5 s, which cuts a build step or a quiet log follow short.
          const req = request({ agent: false, ...options, socketPath: this.socketPath, ...(timeoutMs > 0 ? { timeout: timeoutMs } : {}) }, resolve);
          req.on('timeout', () => req.destroy(new BerthError('TIMEOUT', `berthd did not answer within ${timeoutMs} ms`)));
          req.on('error', reject);
          req.end(body);
        });
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (!(code && NOT_LISTENING.has(code) && Date.now() < giveUpAt && !options.signal?.aborted && daemonStarting(this.socketPath))) {
          throw this.transportError(err as Error);
        }
        await new Promise((r) => setTimeout(r, pause));
      }
    }
  }

  private transportError(err: Error & { code?: string }): Error {
    if (err instanceof BerthError) return err;
    const st = (() => {
      try {
        return statSync(this.socketPath);
      } catch {
        return null;
      }
    })();
    if (err.code === 'EACCES' || err.code === 'EPERM') {
      // berthd runs as another user (the system unit): its socket is for its group.
      const whose = st ? ` (owner uid ${st.uid}, group gid ${st.gid}, mode ${(st.mode & 0o777).toString(8)})` : '';
      const forGroup = st !== null && (st.mode & 0o060) === 0o060;
      return new BerthError('DAEMON_UNREACHABLE', `no permission to use berthd's socket ${this.socketPath}${whose}`, {
        hint: forGroup
          ? `berthd runs as another user and lets its group in: join group ${st.gid} (\`getent group ${st.gid}\` names it; \`sudo usermod -aG NAME $USER\`, then log in again), or run a berthd of your own (\`npm start\`; BERTH_SOCKET or --socket).`
          : 'berthd runs as another user and its socket (or the directory it is in) is for that user only: run berth as that user, or run a berthd of your own (`npm start`; BERTH_SOCKET or --socket).',
        details: { socket: this.socketPath, errno: err.code },
        cause: err,
      });
    }
    if (st && !st.isSocket() && (err.code === 'ECONNREFUSED' || err.code === 'ENOTSOCK')) {
      return new BerthError('DAEMON_UNREACHABLE', `${this.socketPath} is not a socket (it is a ${st.isDirectory() ? 'directory' : 'file'})`, {
        hint: 'Point --socket or BERTH_SOCKET at berthd\'s socket (berthd prints it when it starts; ~/.berth/berth.sock by default).',
        details: { socket: this.socketPath, errno: err.code },
        cause: err,
      });
    }
    if (err.code === 'ENOENT' || err.code === 'ECONNREFUSED' || err.code === 'ECONNRESET') {
      return new BerthError('DAEMON_UNREACHABLE', `cannot reach berthd at ${this.socketPath}: ${err.code}`, {
        details: { socket: this.socketPath, errno: err.code },
        cause: err,
      });
    }
    return err;
  }
}

function toBerthError(err: unknown): Error {
  if (err instanceof BerthError) return err;
  if (err instanceof JSONRPCErrorException) return fromWireError({ ...(err.data as Partial<WireError> | undefined), message: err.message }, err.message);
  return err as Error;
}
