import type { ServerResponse } from 'node:http';
import type { FastifyReply } from 'fastify';
import { BerthError, httpStatusOf, toWireError } from '@berth/client-sdk/protocol';

/** Streams still open, ended when the server closes (fastify's close waits for connections). */
export class OpenStreams {
  private readonly open = new Set<{ end(): void }>();

  add(res: { end(): void }): () => void {
    this.open.add(res);
    return () => this.open.delete(res);
  }

  endAll(): void {
    for (const res of this.open) res.end();
    this.open.clear();
  }
}

/** Refuses a request before any stream starts: `{error}` with the status the registry gives its code. */
export function refuse(reply: FastifyReply, err: unknown): FastifyReply {
  const wire = toWireError(err);
  if (err instanceof BerthError) reply.log.debug({ url: reply.request.url, code: wire.code }, 'Refused request');
  else reply.log.error({ err, url: reply.request.url }, 'Route failed');
  return reply.code(httpStatusOf(wire.code)).send({ error: wire });
}

export interface NdjsonWriter {
  /** Writes one line; resolves once the socket takes more (backpressure). */
  line(value: unknown): Promise<void>;
  /** Writes lines already serialised (each JSON, each ending in a newline); backpressure as line(). */
  text(lines: string): Promise<void>;
  /** Ends with a failure line `{error}`, unless the client is already gone. */
  fail(err: unknown): void;
  end(): void;
  readonly res: ServerResponse;
}

/** Takes the response over from fastify and starts an NDJSON stream on it, tracked in `streams`. */
export function ndjson(reply: FastifyReply, streams: OpenStreams, headers: Record<string, string> = {}): NdjsonWriter {
  reply.hijack();
  const res = reply.raw;
  res.writeHead(200, { 'content-type': 'application/x-ndjson; charset=utf-8', 'cache-control': 'no-store', ...headers });
  const untrack = streams.add(res);
  reply.log.debug({ url: reply.request.url }, 'Started stream');
  res.once('close', () => {
    untrack();
    reply.log.debug({ url: reply.request.url }, 'Ended stream');
  });
  return {
    res,
    async line(value) {
      return this.text(`${JSON.stringify(value)}\n`);
    },
    async text(lines) {
      if (!res.writable) return;
      // Up to 1 MiB may wait in the socket's buffer: the next batch is read while the client takes this one.
      if (res.write(lines) || res.writableLength < 1024 * 1024) return;
      await new Promise<void>((r) => {
        const done = () => {
          res.off('drain', done).off('close', done);
          r();
        };
        res.on('drain', done).on('close', done);
      });
    },
    fail(err) {
      if (res.writable) res.write(`${JSON.stringify({ error: toWireError(err) })}\n`);
      if (!(err instanceof BerthError)) reply.log.error({ err }, 'Stream failed');
    },
    end() {
      untrack();
      res.end();
    },
  };
}
