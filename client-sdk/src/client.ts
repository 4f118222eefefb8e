import { existsSync } from 'node:fs';
import { Agent as HttpAgent, request, type IncomingMessage } from 'node:http';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { JSONRPCClient, JSONRPCErrorException, createJSONRPCErrorResponse } from 'json-rpc-2.0';
import {
  BerthError,
  isErrorCode,
  type BerthEvent,
  type ErrorData,
  type HealthReport,
  type MethodName,
  type ParamsOf,
  type ResultOf,
} from './protocol/index.js';

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
  /** Per-call timeout in ms (default 60 s). */
  timeoutMs?: number;
}

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
  private readonly agent = new HttpAgent({ keepAlive: true, maxSockets: 64 });
  private readonly rpc: JSONRPCClient;

  constructor(opts: ClientOptions = {}) {
    this.socketPath = opts.socketPath ?? defaultSocketPath();
    this.timeoutMs = opts.timeoutMs ?? 60_000;
    this.rpc = new JSONRPCClient(async (payload) => {
      let text: string;
      try {
        text = (await this.http('POST', '/rpc', JSON.stringify(payload))).text;
      } catch (err) {
        if (!(err instanceof BerthError)) throw err;
        // Keep the transport failure's code: json-rpc-2.0 would flatten a thrown error to a message.
        const requests = Array.isArray(payload) ? payload : [payload];
        for (const r of requests) {
          if (r.id !== undefined && r.id !== null) this.rpc.receive(createJSONRPCErrorResponse(r.id, err.rpcCode, err.message, err.toData()));
        }
        return;
      }
      if (text) this.rpc.receive(JSON.parse(text));
    });
  }

  readonly daemon = {
    status: this.method('daemon.status'),
  };

  readonly projects = {
    add: this.method('projects.add'),
    list: this.method('projects.list'),
    get: this.method('projects.get'),
    remove: this.method('projects.remove'),
  };

  readonly agents = {
    define: this.method('agents.define'),
    list: this.method('agents.list'),
    get: this.method('agents.get'),
    remove: this.method('agents.remove'),
  };

  /** Any method by name (for generic tooling); prefer the typed members above. */
  async call<M extends MethodName>(method: M, params?: ParamsOf<M>): Promise<ResultOf<M>> {
    try {
      return (await this.rpc.timeout(this.timeoutMs).request(method, params ?? {})) as ResultOf<M>;
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
    const path = opts.since !== undefined ? `/events?since=${opts.since}` : '/events';
    const res = await new Promise<IncomingMessage>((resolve, reject) => {
      const req = request({ socketPath: this.socketPath, path, method: 'GET', signal: opts.signal }, resolve);
      req.on('error', (err) => reject(this.transportError(err)));
      req.end();
    });
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

  private http(method: 'GET' | 'POST', path: string, body?: string): Promise<{ status: number; text: string }> {
    return new Promise((resolve, reject) => {
      const req = request(
        {
          socketPath: this.socketPath,
          path,
          method,
          agent: this.agent,
          headers: body !== undefined ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } : {},
          timeout: this.timeoutMs,
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
          res.on('error', reject);
        },
      );
      req.on('timeout', () => req.destroy(new BerthError('TIMEOUT', `berthd did not answer within ${this.timeoutMs} ms`)));
      req.on('error', (err) => reject(this.transportError(err)));
      req.end(body);
    });
  }

  private transportError(err: Error & { code?: string }): Error {
    if (err instanceof BerthError) return err;
    if (err.code === 'ENOENT' || err.code === 'ECONNREFUSED' || err.code === 'ECONNRESET' || err.code === 'EACCES') {
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
  if (err instanceof JSONRPCErrorException) {
    const data = err.data as Partial<ErrorData> | undefined;
    const code = isErrorCode(data?.code) ? data.code : 'INTERNAL_ERROR';
    return new BerthError(code, err.message, {
      ...(data?.hint ? { hint: data.hint } : {}),
      ...(data?.details ? { details: data.details } : {}),
    });
  }
  return err as Error;
}
