import type { ServerResponse } from 'node:http';
import Fastify, { type FastifyInstance } from 'fastify';
import { BerthError, MAX_REQUEST_BYTES, type BerthEvent, type ImageBuildProgress } from '@berth/client-sdk/protocol';
import type { EventBus } from '../events/bus.js';
import type { Health } from '../health/index.js';
import type { Logger } from '../log.js';
import type { SessionService } from '../sessions/service.js';
import type { ImageService } from '../images/service.js';
import { paramSchemas } from './schemas.js';
import type { RpcDispatcher } from './dispatcher.js';
import { SocketListener } from './listener.js';

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

function rpcError(code: 'REQUEST_TOO_LARGE' | 'INVALID_REQUEST' | 'INTERNAL_ERROR', message: string) {
  const e = new BerthError(code, message);
  return { jsonrpc: '2.0', id: null, error: { code: e.rpcCode, message: e.message, data: e.toData() } };
}

/**
 * The HTTP face of berthd on its Unix socket: POST /rpc (JSON-RPC 2.0), GET /health, GET /events.
 */
export class RpcServer {
  readonly app: FastifyInstance;
  private readonly streams = new Set<ServerResponse>();
  private listener: SocketListener | null = null;

  constructor(private readonly d: ServerDeps) {
    const app = Fastify({
      bodyLimit: MAX_REQUEST_BYTES,
      return503OnClosing: true,
    });
    this.app = app;

    // Every body reaches the dispatcher as text, whatever its content type: parse errors are a
    // JSON-RPC response (-32700), not an HTTP 400.
    app.removeAllContentTypeParsers();
    app.addContentTypeParser('*', { parseAs: 'string' }, (_req, body, done) => done(null, body));

    app.setErrorHandler((err: Error & { code?: string; statusCode?: number }, req, reply) => {
      if (err.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
        void reply
          .code(413)
          .header('connection', 'close')
          .send(rpcError('REQUEST_TOO_LARGE', `request body exceeds ${MAX_REQUEST_BYTES} bytes`));
        return;
      }
      if (req.url.startsWith('/rpc') && (err.statusCode ?? 500) < 500) {
        void reply.code(400).send(rpcError('INVALID_REQUEST', `Invalid Request: ${err.message}`));
        return;
      }
      d.log.error({ err, url: req.url }, 'HTTP handler failed');
      void reply.code(500).send(rpcError('INTERNAL_ERROR', err.message));
    });

    app.post('/rpc', async (req, reply) => {
      const text = typeof req.body === 'string' ? req.body : '';
      const { body } = await d.dispatcher.handle(text);
      if (body === null) return reply.code(204).send();
      return reply.header('content-type', 'application/json; charset=utf-8').send(JSON.stringify(body));
    });

    app.get('/health', async (_req, reply) => {
      const report = await d.health.report();
      return reply.code(report.status === 'ok' ? 200 : 503).send(report);
    });
    app.get('/health/live', async () => ({ status: 'ok' }));

    app.get<{ Querystring: { since?: string } }>('/events', (req, reply) => {
      const since = Number(req.query.since ?? NaN);
      reply.hijack();
      const res = reply.raw;
      res.writeHead(200, {
        'content-type': 'application/x-ndjson; charset=utf-8',
        'cache-control': 'no-store',
        connection: 'keep-alive',
      });
      const write = (e: BerthEvent | { type: string; [k: string]: unknown }) => res.write(`${JSON.stringify(e)}\n`);
      write({ type: 'hello', seq: d.bus.lastSeq, ts: new Date().toISOString() });
      if (Number.isInteger(since) && since >= 0) for (const e of d.bus.since(since)) write(e);
      const unsubscribe = d.bus.subscribe(write);
      const beat = setInterval(() => write({ type: 'ping', ts: new Date().toISOString() }), d.heartbeatMs ?? 15_000);
      this.streams.add(res);
      const cleanup = () => {
        clearInterval(beat);
        unsubscribe();
        this.streams.delete(res);
      };
      res.on('close', cleanup);
      req.raw.on('close', cleanup);
    });

    app.get<{ Params: { id: string }; Querystring: { follow?: string; tail?: string; since?: string } }>(
      '/sessions/:id/logs',
      async (req, reply) => {
        const follow = req.query.follow === '1' || req.query.follow === 'true';
        const tail = req.query.tail !== undefined ? Number(req.query.tail) : undefined;
        if (tail !== undefined && (!Number.isInteger(tail) || tail < 0)) {
          return reply.code(400).send({ error: new BerthError('INVALID_PARAMS', 'tail must be a whole number').toData() });
        }
        const ctl = new AbortController();
        let lines: AsyncIterable<unknown> | unknown[];
        try {
          lines = await d.sessions.logStream(req.params.id, {
            follow,
            signal: ctl.signal,
            ...(tail !== undefined ? { tail } : {}),
            ...(req.query.since ? { since: req.query.since } : {}),
          });
        } catch (err) {
          if (err instanceof BerthError) {
            return reply.code(err.code === 'SESSION_NOT_FOUND' ? 404 : 409).send({ error: { message: err.message, ...err.toData() } });
          }
          throw err;
        }
        reply.hijack();
        const res = reply.raw;
        res.writeHead(200, { 'content-type': 'application/x-ndjson; charset=utf-8', 'cache-control': 'no-store' });
        this.streams.add(res);
        const abort = () => ctl.abort();
        res.on('close', abort);
        try {
          for await (const l of lines) {
            if (!res.write(`${JSON.stringify(l)}\n`)) await new Promise((r) => res.once('drain', r));
          }
        } catch (err) {
          if (!ctl.signal.aborted) res.write(`${JSON.stringify({ error: err instanceof BerthError ? err.toData() : { code: 'INTERNAL_ERROR' }, message: (err as Error).message })}\n`);
        } finally {
          this.streams.delete(res);
          res.off('close', abort);
          res.end();
        }
      },
    );

    // The image builds with progress: NDJSON lines {progress}, then {result} or {error}.
    const streamed = {
      '/images/build': { method: 'images.build', run: (p: never, on: (x: ImageBuildProgress) => void) => d.images.build(p, on) },
      '/images/build-defaults': { method: 'images.buildDefaults', run: (p: never, on: (x: ImageBuildProgress) => void) => d.images.buildDefaults(p, on) },
    } as const;
    for (const [path, { method, run }] of Object.entries(streamed)) {
      app.post(path, async (req, reply) => {
        let params: unknown;
        try {
          params = JSON.parse(typeof req.body === 'string' ? req.body : '');
        } catch {
          const e = new BerthError('PARSE_ERROR', 'body must be JSON');
          return reply.code(400).send({ error: { message: e.message, ...e.toData() } });
        }
        const parsed = paramSchemas[method].safeParse(params);
        if (!parsed.success) {
          const e = new BerthError('INVALID_PARAMS', `invalid params for ${method}: ${parsed.error.issues[0]?.message ?? ''}`);
          return reply.code(400).send({ error: { message: e.message, ...e.toData() } });
        }
        reply.hijack();
        const res = reply.raw;
        res.writeHead(200, { 'content-type': 'application/x-ndjson; charset=utf-8', 'cache-control': 'no-store' });
        this.streams.add(res);
        try {
          const result = await run(parsed.data as never, (progress) => res.write(`${JSON.stringify({ progress })}\n`));
          res.write(`${JSON.stringify({ result })}\n`);
        } catch (err) {
          const e = err instanceof BerthError ? err : new BerthError('INTERNAL_ERROR', (err as Error).message);
          res.write(`${JSON.stringify({ error: { message: e.message, ...e.toData() } })}\n`);
        } finally {
          this.streams.delete(res);
          res.end();
        }
      });
    }

    // fastify.close() waits for open connections; event streams never end on their own.
    app.addHook('preClose', (done) => {
      for (const res of this.streams) res.end();
      this.streams.clear();
      done();
    });
  }

  /** Binds `path` and serves it. */
  async listen(path: string): Promise<void> {
    await this.serve(await SocketListener.open(path, this.d.log));
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
