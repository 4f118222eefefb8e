import Fastify, { LogController, type FastifyInstance } from 'fastify';
import { BerthError, MAX_REQUEST_BYTES } from '@berth/client-sdk/protocol';
import type { EventBus } from '../events/bus.js';
import type { Health } from '../health/index.js';
import type { Logger } from '../log.js';
import type { SessionService } from '../sessions/service.js';
import type { ImageService } from '../images/service.js';
import type { RpcDispatcher } from './dispatcher.js';
import type { SocketAccess } from '../config/socket-access.js';
import { SocketListener } from './listener.js';
import { buildRoutes } from './routes/builds.js';
import { eventRoutes } from './routes/events.js';
import { execRoutes } from './routes/exec.js';
import { healthRoutes } from './routes/health.js';
import { logRoutes } from './routes/logs.js';
import { rpcRoutes } from './routes/rpc.js';
import { OpenStreams } from './wire.js';

export interface ServerDeps {
  dispatcher: RpcDispatcher;
  health: Health;
  bus: EventBus;
  sessions: SessionService;
  images: ImageService;
  log: Logger;
  /** Interval of `{"type":"ping"}` keep-alive lines on /events. */
  heartbeatMs?: number;
}

/** What of a refused (413) body is still read and dropped so its sender gets the answer, and for how long. */
const DRAIN_BYTES = 64 * 1024 * 1024;
const DRAIN_MS = 30_000;

function rpcError(code: 'REQUEST_TOO_LARGE' | 'INVALID_REQUEST' | 'INTERNAL_ERROR', message: string) {
  const e = new BerthError(code, message);
  return { jsonrpc: '2.0', id: null, error: { code: e.rpcCode, message: e.message, data: e.toData() } };
}

/**
 * The HTTP face of berthd on its Unix socket: POST /rpc (JSON-RPC 2.0), GET /health, and the
 * streams the protocol declares (streamRoutes), each a plugin in routes/. Requests log through
 * berth's logger, each with its own id (`reqId`).
 */
export class RpcServer {
  readonly app: FastifyInstance;
  private readonly streams = new OpenStreams();
  private listener: SocketListener | null = null;

  constructor(private readonly d: ServerDeps) {
    let seq = 0;
    const app = Fastify({
      loggerInstance: d.log,
      genReqId: () => `r${++seq}`,
      logController: new LogController({ disableRequestLogging: true }),
      bodyLimit: MAX_REQUEST_BYTES,
      return503OnClosing: true,
    }) as unknown as FastifyInstance;
    this.app = app;

    // Every body reaches its route as text, whatever its content type: a JSON-RPC parse error is a
    // JSON-RPC response (-32700), not an HTTP 400.
    app.removeAllContentTypeParsers();
    app.addContentTypeParser('*', { parseAs: 'string' }, (_req, body, done) => done(null, body));

    app.setErrorHandler((err: Error & { code?: string; statusCode?: number }, req, reply) => {
      if (err.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
        // The client is likely still writing: closing now would reset the connection under it and
        // lose this answer (EPIPE). The rest of the body is read and dropped instead (Node does that
        // for an answered request), up to a cap in bytes and time, past which the socket goes.
        const raw = req.raw;
        let dropped = 0;
        const cut = () => raw.socket?.destroy();
        const timer = setTimeout(cut, DRAIN_MS).unref();
        raw.on('data', (c: Buffer) => {
          dropped += c.length;
          if (dropped > DRAIN_BYTES) cut();
        });
        raw.once('close', () => clearTimeout(timer));
        raw.once('end', () => clearTimeout(timer));
        // Even when the client asked to close (Connection: close): Node would close right after the
        // answer, while the body still comes, and the client would see a reset instead of the 413.
        // (fastify sets that header on any body it failed to read.)
        reply.removeHeader('connection');
        reply.raw.shouldKeepAlive = true;
        void reply.code(413).send(rpcError('REQUEST_TOO_LARGE', `request body exceeds ${MAX_REQUEST_BYTES} bytes`));
        return;
      }
      if (req.url.startsWith('/rpc') && (err.statusCode ?? 500) < 500) {
        void reply.code(400).send(rpcError('INVALID_REQUEST', `Invalid Request: ${err.message}`));
        return;
      }
      req.log.error({ err, url: req.url }, 'HTTP handler failed');
      void reply.code(500).send(rpcError('INTERNAL_ERROR', err.message));
    });

    const streams = this.streams;
    void app.register(rpcRoutes, { dispatcher: d.dispatcher });
    void app.register(healthRoutes, { health: d.health });
    void app.register(eventRoutes, { bus: d.bus, streams, heartbeatMs: d.heartbeatMs ?? 15_000, sessions: d.sessions });
    void app.register(logRoutes, { sessions: d.sessions, streams });
    void app.register(execRoutes, { sessions: d.sessions, streams });
    void app.register(buildRoutes, { images: d.images, streams });

    // fastify.close() waits for open connections; event streams never end on their own.
    app.addHook('preClose', (done) => {
      streams.endAll();
      done();
    });
  }

  /** Binds `path` and serves it. */
  async listen(path: string, access?: SocketAccess): Promise<void> {
    await this.serve(await SocketListener.open(path, this.d.log, access));
  }

  /** Serves a socket bound earlier (berthd binds it before loading the daemon); held requests go first. */
  async serve(listener: SocketListener): Promise<void> {
    await this.app.ready();
    this.listener = listener;
    listener.attach(this.app.routing);
  }

  /** Stops accepting, lets in-flight requests finish, ends event streams, removes the socket. */
  async close(): Promise<void> {
    // fastify answers 503 from here on and ends the streams (preClose); the listener then drains.
    await this.app.close();
    await this.listener?.close();
    this.listener = null;
  }
}
