import { Agent as HttpAgent, request, type IncomingMessage, type RequestOptions } from 'node:http';
import { setMaxListeners } from 'node:events';
import { createInterface } from 'node:readline';
import { JSONRPCClient, JSONRPCErrorException, createJSONRPCErrorResponse } from 'json-rpc-2.0';
import {
  BerthError,
  fromWireError,
  idempotentMethods,
  streamRoutes,
  type Session,
  type SessionState,
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
  longRunningMethods,
} from './protocol/index.js';
import { followLogBatches, followLogs, type LogOptions } from './logs.js';
import { daemonAway, followEvents, type EventsOptions, type StreamedEvent } from './events.js';
import { openExecStream, type ExecStream } from './exec.js';
import { daemonStarting, defaultSocketPath, NOT_LISTENING, transportError } from './socket.js';

export { daemonStarting, defaultSocketPath, SYSTEM_SOCKET } from './socket.js';

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

/** Per call: cancel it (ABORTED), or give up after `timeoutMs` (TIMEOUT; 0: wait as long as berthd works). */
export interface CallOptions {
  signal?: AbortSignal;
  timeoutMs?: number;
}

/**
 * `connected`: the last call or stream reached berthd. `disconnected`: the last one could not (berthd
 * down, restarting, or the connection broke). `reconnecting`: an events() iteration is waiting for
 * berthd to come back. `unknown`: nothing was tried yet.
 */
export type ConnectionState = 'unknown' | 'connected' | 'disconnected' | 'reconnecting';

/** What `waitFor` waits for: a state, any of some states, or a predicate on the session. */
export type SessionCondition = SessionState | readonly SessionState[] | ((s: Session) => boolean);

/** Params may be left out where every field is optional. */
type Call<M extends MethodName> = {} extends ParamsOf<M>
  ? (params?: ParamsOf<M>, opts?: CallOptions) => Promise<ResultOf<M>>
  : (params: ParamsOf<M>, opts?: CallOptions) => Promise<ResultOf<M>>;

/** What the JSON-RPC transport needs of each call. */
interface Transport {
  signal: AbortSignal;
  timeoutMs: number;
  /** Idempotent: may be sent again on a fresh connection when the first broke before the answer. */
  retry: boolean;
}


/**
 * Typed client for berthd's JSON-RPC API over its Unix socket. Every method of the protocol is
 * here once; failures reject with BerthError carrying the stable `code`.
 */
export class BerthClient {
  readonly socketPath: string;
  private readonly timeoutMs: number;
  private readonly startWaitMs: number;
  private readonly agent = new HttpAgent({ keepAlive: true, maxSockets: 64 });
  private readonly rpc: JSONRPCClient<Transport>;
  /** Aborted by close(): ends every call and iteration of this client. */
  private readonly closed = new AbortController();
  private state: ConnectionState = 'unknown';
  private readonly stateListeners = new Set<(state: ConnectionState, cause?: BerthError) => void>();

  constructor(opts: ClientOptions = {}) {
    this.socketPath = opts.socketPath ?? defaultSocketPath();
    this.timeoutMs = opts.timeoutMs ?? 60_000;
    this.startWaitMs = opts.startWaitMs ?? 10_000;
    // Every request of this client listens on it (close() ends them): many at once is normal.
    setMaxListeners(0, this.closed.signal);
    this.rpc = new JSONRPCClient<Transport>(async (payload, t) => {
      const requests = Array.isArray(payload) ? payload : [payload];
      let text: string;
      try {
        text = (await this.post(JSON.stringify(payload), t)).text;
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
    reloadConfig: this.method('daemon.reloadConfig'),
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
    /** Every session sessions.list would give, page after page (it follows nextCursor). */
    iterate: (params: ParamsOf<'sessions.list'> = {}, opts: CallOptions = {}): AsyncGenerator<Session> => this.iterateSessions(params, opts),
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
    execStream: (params: ExecStreamParams): Promise<ExecStream> => openExecStream(this.socketPath, this.startWaitMs, params),
    status: this.method('sessions.status'),
    diff: this.method('sessions.diff'),
    merge: this.method('sessions.merge'),
    usage: this.method('sessions.usage'),
    requests: this.method('sessions.requests'),
  };

  readonly tasks = {
    add: this.method('tasks.add'),
    list: this.method('tasks.list'),
    get: this.method('tasks.get'),
    update: this.method('tasks.update'),
    cancel: this.method('tasks.cancel'),
    remove: this.method('tasks.remove'),
    import: this.method('tasks.import'),
  };

  readonly pools = {
    create: this.method('pools.create'),
    list: this.method('pools.list'),
    get: this.method('pools.get'),
    scale: this.method('pools.scale'),
    stop: this.method('pools.stop'),
  };

  readonly maintenance = {
    list: this.method('maintenance.list'),
    run: this.method('maintenance.run'),
    backup: this.method('maintenance.backup'),
  };

  readonly schedules = {
    add: this.method('schedules.add'),
    list: this.method('schedules.list'),
    get: this.method('schedules.get'),
    update: this.method('schedules.update'),
    remove: this.method('schedules.remove'),
    run: this.method('schedules.run'),
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
  buildImage(params: ParamsOf<'images.build'>, onProgress: (p: ImageBuildProgress) => void, opts: Pick<CallOptions, 'signal'> = {}): Promise<ImageBuildResult> {
    return this.streamed(streamRoutes['images.build'].path, params, onProgress, opts.signal);
  }

  /** images.buildDefaults over POST /images/build-defaults, with progress like buildImage. */
  buildDefaultImages(params: ParamsOf<'images.buildDefaults'>, onProgress: (p: ImageBuildProgress) => void, opts: Pick<CallOptions, 'signal'> = {}): Promise<DefaultImagesResult> {
    return this.streamed(streamRoutes['images.buildDefaults'].path, params, onProgress, opts.signal);
  }

  /** An aborted `signal` rejects with ABORTED (the build goes on in berthd). */
  private async streamed<R>(path: string, params: unknown, onProgress: (p: ImageBuildProgress) => void, callSignal?: AbortSignal): Promise<R> {
    const body = JSON.stringify(params);
    const signal = this.signalFor(callSignal);
    if (signal.aborted) throw aborted(signal);
    const res = await this.send({ path, method: 'POST', signal, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, body);
    let result: R | null = null;
    try {
      for await (const raw of createInterface({ input: res, crlfDelay: Infinity })) {
        if (!raw) continue;
        const msg = JSON.parse(raw) as { progress?: ImageBuildProgress; result?: R; error?: WireError };
        if (msg.progress) onProgress(msg.progress);
        if (msg.result) result = msg.result;
        if (msg.error) throw fromWireError(msg.error, 'build failed');
      }
    } catch (err) {
      if (signal.aborted) throw aborted(signal);
      // The connection broke mid-stream (berthd went away): a transport failure, not berthd's bug.
      if (!(err instanceof BerthError) && (err as NodeJS.ErrnoException).code) throw transportError(this.socketPath, err as Error);
      throw err;
    } finally {
      res.destroy();
    }
    if (signal.aborted) throw aborted(signal);
    if (!result) throw new BerthError('CONNECTION_LOST', `berthd closed the ${path} stream before the result`, { details: { socket: this.socketPath } });
    return result;
  }

  /** Any method by name (for generic tooling); prefer the typed members above. */
  async call<M extends MethodName>(method: M, params?: ParamsOf<M>, opts: CallOptions = {}): Promise<ResultOf<M>> {
    const signal = this.signalFor(opts.signal);
    if (signal.aborted) throw aborted(signal);
    const timeoutMs = opts.timeoutMs ?? (longRunningMethods.has(method) ? 0 : this.timeoutMs);
    try {
      return (await this.rpc.request(method, params ?? {}, { signal, timeoutMs, retry: idempotentMethods.has(method) })) as ResultOf<M>;
    } catch (err) {
      throw toBerthError(err);
    }
  }

  /** The connection as the last call or stream found it. */
  get connectionState(): ConnectionState {
    return this.state;
  }

  /** Calls `listener` on each change of connectionState; returns the unsubscribe. */
  onConnectionChange(listener: (state: ConnectionState, cause?: BerthError) => void): () => void {
    this.stateListeners.add(listener);
    return () => void this.stateListeners.delete(listener);
  }

  /**
   * Resolves with the session once `until` holds: a state (`'exited'`), any of some states, or a
   * predicate. It subscribes to the session's events first and reads the session after, so no
   * transition falls between the two; it reads again after each reconnect, so a berthd restart
   * (kill -9 included) meanwhile loses nothing. Rejects with TIMEOUT after `timeoutMs`, ABORTED when
   * `signal` aborts, SESSION_NOT_FOUND when there is no such session or it is removed first.
   */
  async waitFor(id: string, until: SessionCondition, opts: { timeoutMs?: number; signal?: AbortSignal } = {}): Promise<Session> {
    const matches =
      typeof until === 'function' ? (until as (s: Session) => boolean) : (s: Session) => (typeof until === 'string' ? [until] : (until as readonly SessionState[])).includes(s.state);
    const ctl = new AbortController();
    let timedOut = false;
    const timer = opts.timeoutMs !== undefined ? setTimeout(() => ((timedOut = true), ctl.abort()), opts.timeoutMs) : null;
    const signal = AbortSignal.any([ctl.signal, this.signalFor(opts.signal)]);
    const failure = () =>
      timedOut ? new BerthError('TIMEOUT', `session ${id} did not get there within ${opts.timeoutMs} ms`, { details: { id } }) : aborted(signal);
    try {
      for await (const item of followEvents(this.followHooks(), { session: id, types: ['session.created', 'session.state', 'session.removed'], signal })) {
        let s: Session;
        if ('hello' in item || item.event.type === 'gap' || item.event.type === 'session.removed') {
          try {
            s = await this.sessions.get({ id }, { signal });
          } catch (err) {
            if (signal.aborted) throw failure();
            if (daemonAway(err)) continue; // the stream reconnects, and reads again when it is back
            throw err;
          }
        } else if (item.event.type === 'session.state' || item.event.type === 'session.created') {
          s = item.event.data.session;
        } else continue;
        if (matches(s)) return s;
        if (s.state === 'removed') throw new BerthError('SESSION_NOT_FOUND', `session ${id} was removed while waiting`, { details: { id } });
      }
      throw failure();
    } finally {
      if (timer) clearTimeout(timer);
      ctl.abort();
    }
  }

  /** GET /health: the daemon's named checks. Resolves for both 200 and 503. */
  async health(opts: CallOptions = {}): Promise<HealthReport> {
    const res = await this.post(undefined, { signal: this.signalFor(opts.signal), timeoutMs: opts.timeoutMs ?? this.timeoutMs, retry: true }, 'GET', '/health');
    return JSON.parse(res.text) as HealthReport;
  }

  /**
   * Lifecycle events from GET /events until `signal` aborts (or close()), when the iteration simply
   * ends. Filters (`types`, with `session.*` prefixes; `session`; `project`) run in berthd. When
   * berthd goes away (restart, kill -9) it waits with backoff and resumes after the last event it
   * delivered, without duplicates; where events were lost meanwhile (a new berthd, or a buffer
   * that moved on) it yields a `gap` item first (EventGap): re-read what you mirror. With
   * `reconnect: false` it ends when the stream does. `since` (with the `epoch` it counts in)
   * replays buffered events with a greater `seq`.
   */
  async *events(opts: EventsOptions = {}): AsyncGenerator<StreamedEvent> {
    const signal = this.signalFor(opts.signal);
    for await (const item of followEvents(this.followHooks(), { ...opts, signal })) {
      if ('event' in item) yield item.event;
    }
  }

  /**
   * Log lines of a session (a removed one's too, until retention ends) from GET /sessions/:id/logs:
   * all of its history unless tail, since, until or grep narrow it. With `follow`, keeps going
   * (across restarts of the session) until `signal` aborts, the session is removed, or `until`
   * passes; if berthd restarts meanwhile, it reconnects and resumes after the last line it
   * delivered (lines with the same timestamp as that one are not repeated).
   */
  logs(id: string, opts: LogOptions = {}): AsyncGenerator<LogLine> {
    return followLogs((o) => this.send(o), id, { ...opts, signal: this.signalFor(opts.signal) });
  }

  /** logs() in batches as they arrive: for long histories, fewer turns per line. */
  logBatches(id: string, opts: LogOptions = {}): AsyncGenerator<LogLine[]> {
    return followLogBatches((o) => this.send(o), id, { ...opts, signal: this.signalFor(opts.signal) });
  }

  /** Ends every call (ABORTED) and iteration of this client, and its connections. */
  close(): void {
    this.closed.abort();
    this.agent.destroy();
  }

  [Symbol.dispose](): void {
    this.close();
  }

  private method<M extends MethodName>(name: M): Call<M> {
    return ((params?: ParamsOf<M>, opts?: CallOptions) => this.call(name, params, opts)) as Call<M>;
  }

  private async *iterateSessions(params: ParamsOf<'sessions.list'>, opts: CallOptions): AsyncGenerator<Session> {
    let cursor = params.cursor;
    do {
      const page = await this.call('sessions.list', { ...params, ...(cursor ? { cursor } : {}) }, opts);
      yield* page.items;
      cursor = page.nextCursor ?? undefined;
    } while (cursor);
  }

  private signalFor(signal: AbortSignal | undefined): AbortSignal {
    return signal ? AbortSignal.any([signal, this.closed.signal]) : this.closed.signal;
  }

  private followHooks() {
    return {
      send: (o: RequestOptions) => this.send(o),
      onConnected: () => this.setState('connected'),
      onReconnecting: (cause: unknown) => this.setState('reconnecting', cause instanceof BerthError ? cause : undefined),
    };
  }

  private setState(state: ConnectionState, cause?: BerthError): void {
    if (state === this.state) return;
    this.state = state;
    for (const l of this.stateListeners) {
      try {
        l(state, cause);
      } catch {
        // a listener's failure is its own
      }
    }
  }

  /**
   * One request and its whole answer on a kept-alive connection. berthd closes a connection idle for
   * 60 s; a request that meets such a connection as it closes breaks before any answer (EPIPE,
   * ECONNRESET): an idempotent one is sent once more on a fresh connection, anything else fails
   * with CONNECTION_LOST (it may have run).
   */
  private async post(body: string | undefined, t: Transport, method: 'GET' | 'POST' = 'POST', path = '/rpc'): Promise<{ status: number; text: string }> {
    for (let attempt = 0; ; attempt++) {
      try {
        const r = await this.http(method, path, body, t, attempt > 0);
        this.setState('connected');
        return r;
      } catch (err) {
        const e = err instanceof BerthError ? err : transportError(this.socketPath, err as Error);
        if (t.retry && attempt === 0 && e.code === 'CONNECTION_LOST' && !t.signal.aborted) continue;
        if (daemonAway(e) && this.state !== 'reconnecting') this.setState('disconnected', e);
        throw e;
      }
    }
  }

  /** `timeoutMs` 0 waits for as long as the daemon works; `fresh`: a new connection, not a kept one. */
  private async http(method: 'GET' | 'POST', path: string, body: string | undefined, t: Pick<Transport, 'signal' | 'timeoutMs'>, fresh = false): Promise<{ status: number; text: string }> {
    const res = await this.send(
      {
        path,
        method,
        agent: fresh ? false : this.agent,
        signal: t.signal,
        headers: body !== undefined ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } : {},
      },
      body,
      t.timeoutMs,
    );
    return new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', (err) => reject(t.signal.aborted ? aborted(t.signal) : transportError(this.socketPath, err)));
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
          throw options.signal?.aborted ? aborted(options.signal) : transportError(this.socketPath, err as Error);
        }
        await new Promise((r) => setTimeout(r, pause));
      }
    }
  }
}

function aborted(signal: AbortSignal): BerthError {
  return new BerthError('ABORTED', 'the call was cancelled', { cause: signal.reason });
}

function toBerthError(err: unknown): Error {
  if (err instanceof BerthError) return err;
  if (err instanceof JSONRPCErrorException) return fromWireError({ ...(err.data as Partial<WireError> | undefined), message: err.message }, err.message);
  return err as Error;
}
