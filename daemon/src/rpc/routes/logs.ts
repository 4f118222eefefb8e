import type { FastifyPluginAsync } from 'fastify';
import { BerthError, streamRoutes } from '@berth/client-sdk/protocol';
import type { SessionService } from '../../sessions/service.js';
import { ndjson, refuse, type OpenStreams } from '../wire.js';

/** The `sessions.logs` stream: a session's log lines (tail, since, follow); a failure is the last line. */
export const logRoutes: FastifyPluginAsync<{ sessions: SessionService; streams: OpenStreams }> = async (app, { sessions, streams }) => {
  app.get<{ Params: { id: string }; Querystring: { follow?: string; tail?: string; since?: string } }>(streamRoutes['sessions.logs'].path, async (req, reply) => {
    const follow = req.query.follow === '1' || req.query.follow === 'true';
    const tail = req.query.tail !== undefined ? Number(req.query.tail) : undefined;
    if (tail !== undefined && (!Number.isInteger(tail) || tail < 0)) return refuse(reply, new BerthError('INVALID_PARAMS', 'tail must be a whole number'));
    const ctl = new AbortController();
    let lines: AsyncIterable<unknown> | unknown[];
    try {
      lines = await sessions.logStream(req.params.id, {
        follow,
        signal: ctl.signal,
        ...(tail !== undefined ? { tail } : {}),
        ...(req.query.since ? { since: req.query.since } : {}),
      });
    } catch (err) {
      return refuse(reply, err);
    }
    const out = ndjson(reply, streams);
    const abort = () => ctl.abort();
    out.res.on('close', abort);
    try {
      for await (const l of lines) await out.line(l);
    } catch (err) {
      if (!ctl.signal.aborted) out.fail(err);
    } finally {
      out.res.off('close', abort);
      out.end();
    }
  });
};
