import type { FastifyPluginAsync } from 'fastify';
import { streamRoutes, type Streams } from '@berth/client-sdk/protocol';
import type { EventBus } from '../../events/bus.js';
import { ndjson, type OpenStreams } from '../wire.js';

type Line = Streams['events']['line'];

/** The `events` stream: hello, the buffered events after `since`, then each event as it happens, with pings. */
export const eventRoutes: FastifyPluginAsync<{ bus: EventBus; streams: OpenStreams; heartbeatMs: number }> = async (app, { bus, streams, heartbeatMs }) => {
  app.get<{ Querystring: { since?: string } }>(streamRoutes.events.path, (req, reply) => {
    const since = Number(req.query.since ?? NaN);
    const out = ndjson(reply, streams, { connection: 'keep-alive' });
    const write = (e: Line) => void out.line(e);
    write({ type: 'hello', seq: bus.lastSeq, ts: new Date().toISOString() });
    if (Number.isInteger(since) && since >= 0) for (const e of bus.since(since)) write(e);
    const unsubscribe = bus.subscribe(write);
    const beat = setInterval(() => write({ type: 'ping', ts: new Date().toISOString() }), heartbeatMs);
    const cleanup = () => {
      clearInterval(beat);
      unsubscribe();
    };
    out.res.on('close', cleanup);
    req.raw.on('close', cleanup);
  });
};
