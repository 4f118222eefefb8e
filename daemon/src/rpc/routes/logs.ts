import type { FastifyPluginAsync } from 'fastify';
import { BerthError, streamRoutes, type ParamsOf } from '@berth/client-sdk/protocol';
import type { SessionService } from '../../sessions/service.js';
import { ndjson, refuse, type OpenStreams } from '../wire.js';

type Query = { follow?: string; tail?: string; since?: string; until?: string; grep?: string };

/**
 * The `sessions.logs` stream: a session's log lines from berth's store (all of them unless
 * tail/since/until/grep say otherwise), then with follow the new ones; a failure is the last line.
 * Lines go out as stored, a batch per write, at the pace the client reads.
 */
export const logRoutes: FastifyPluginAsync<{ sessions: SessionService; streams: OpenStreams }> = async (app, { sessions, streams }) => {
  app.get<{ Params: { id: string }; Querystring: Query }>(streamRoutes['sessions.logs'].path, async (req, reply) => {
    const q = req.query;
    const follow = q.follow === '1' || q.follow === 'true';
    const tail = q.tail !== undefined ? Number(q.tail) : undefined;
    if (tail !== undefined && (!Number.isInteger(tail) || tail < 0)) return refuse(reply, new BerthError('INVALID_PARAMS', 'tail must be a whole number'));
    for (const k of ['since', 'until', 'grep'] as const) {
      if (q[k] !== undefined && typeof q[k] !== 'string') return refuse(reply, new BerthError('INVALID_PARAMS', `${k} is given more than once`));
    }
    const ctl = new AbortController();
    let batches: AsyncIterable<string[]>;
    try {
      batches = await sessions.logStream(req.params.id, {
        follow,
        signal: ctl.signal,
        ...(tail !== undefined ? { tail } : {}),
        ...(q.since !== undefined ? { since: q.since } : {}),
        ...(q.until !== undefined ? { until: q.until } : {}),
        ...(q.grep !== undefined ? { grep: q.grep } : {}),
      } satisfies Omit<ParamsOf<'sessions.logs'>, 'id'> & { follow: boolean; signal: AbortSignal });
    } catch (err) {
      return refuse(reply, err);
    }
    const out = ndjson(reply, streams);
    const abort = () => ctl.abort();
    out.res.on('close', abort);
    try {
      for await (const b of batches) {
        if (ctl.signal.aborted) break;
        let text = '';
        for (const l of b) text += `${l}\n`;
        await out.text(text);
      }
    } catch (err) {
      if (!ctl.signal.aborted) out.fail(err);
    } finally {
      out.res.off('close', abort);
      ctl.abort();
      out.end();
    }
  });
};
