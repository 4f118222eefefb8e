import type { FastifyPluginAsync } from 'fastify';
import { BerthError, NAME_PATTERN, eventTypeFilterProblem, streamRoutes, type Streams } from '@berth/client-sdk/protocol';
import type { EventBus } from '../../events/bus.js';
import { eventFilter, type EventFilter } from '../../events/filter.js';
import type { SessionService } from '../../sessions/service.js';
import { ndjson, refuse, type OpenStreams } from '../wire.js';

type Line = Streams['events']['line'];
type Query = Partial<Record<'since' | 'epoch' | 'types' | 'session' | 'project', string | string[]>>;

/** The one value of a query key (a repeated key is refused, except `types`, whose values add up). */
function one(q: Query, key: keyof Query): string | undefined {
  const v = q[key];
  if (Array.isArray(v)) throw new BerthError('INVALID_PARAMS', `${key} may be given once`, { details: { param: key } });
  return v;
}

function parse(q: Query, sessions: Pick<SessionService, 'resolve'>): { since?: number; epoch?: string; filter: EventFilter } {
  const out: { since?: number; epoch?: string; filter: EventFilter } = { filter: {} };
  const since = one(q, 'since');
  if (since !== undefined) {
    const n = Number(since);
    if (since === '' || !Number.isSafeInteger(n) || n < 0) throw new BerthError('INVALID_PARAMS', 'since must be a whole number', { details: { param: 'since' } });
    out.since = n;
  }
  const epoch = one(q, 'epoch');
  if (epoch !== undefined) {
    if (!/^[0-9a-f]{1,64}$/.test(epoch)) throw new BerthError('INVALID_PARAMS', 'epoch must be the hex id a hello line gave', { details: { param: 'epoch' } });
    out.epoch = epoch;
  }
  if (q.types !== undefined) {
    const types = (Array.isArray(q.types) ? q.types : [q.types]).flatMap((t) => t.split(',')).map((t) => t.trim()).filter(Boolean);
    const problem = eventTypeFilterProblem(types);
    if (problem) throw new BerthError('INVALID_PARAMS', problem, { details: { param: 'types' } });
    out.filter.types = types;
  }
  const session = one(q, 'session');
  if (session !== undefined) {
    if (!NAME_PATTERN.test(session)) throw new BerthError('INVALID_PARAMS', 'session must be a session id, id prefix or name', { details: { param: 'session' } });
    let id: string | null = null;
    try {
      id = sessions.resolve(session).id;
    } catch (err) {
      // Not there yet: its events pass once a session of that name (or id) has them.
      if (!(err instanceof BerthError && err.code === 'SESSION_NOT_FOUND')) throw err;
    }
    out.filter.session = { ref: session, id };
  }
  const project = one(q, 'project');
  if (project !== undefined) {
    if (!NAME_PATTERN.test(project)) throw new BerthError('INVALID_PARAMS', 'project must be a project name', { details: { param: 'project' } });
    out.filter.project = project;
  }
  return out;
}

/**
 * The `events` stream: hello, then (with `since`) a gap line if events after it are lost and the
 * buffered events after it, then each event as it happens, with pings. Filters apply to events
 * only; hello, gap and ping always go out.
 */
export const eventRoutes: FastifyPluginAsync<{ bus: EventBus; streams: OpenStreams; heartbeatMs: number; sessions: SessionService }> = async (
  app,
  { bus, streams, heartbeatMs, sessions },
) => {
  app.get<{ Querystring: Query }>(streamRoutes.events.path, (req, reply) => {
    let p: ReturnType<typeof parse>;
    try {
      p = parse(req.query, sessions);
    } catch (err) {
      return refuse(reply, err);
    }
    const pass = eventFilter(p.filter, (id) => {
      try {
        return sessions.resolve(id).project;
      } catch {
        return undefined;
      }
    });
    const out = ndjson(reply, streams, { connection: 'keep-alive' });
    const write = (e: Line) => void out.line(e);
    const ts = () => new Date().toISOString();
    const oldest = bus.oldestSeq;
    write({ type: 'hello', seq: bus.lastSeq, oldest, epoch: bus.epoch, ts: ts() });
    if (p.since !== undefined) {
      // A since from another epoch (or past this one's last seq, which only another could give)
      // counts in another numbering: all this daemon buffered is new to the client.
      const restarted = (p.epoch !== undefined && p.epoch !== bus.epoch) || p.since > bus.lastSeq;
      const from = restarted ? 0 : p.since;
      if (restarted || from < oldest - 1) {
        write({
          type: 'gap',
          seq: Math.max(from, oldest - 1),
          ts: ts(),
          data: { reason: restarted ? 'restarted' : 'overflow', since: p.since, epoch: bus.epoch, previousEpoch: p.epoch ?? null, oldest },
        });
      }
      for (const e of bus.since(from)) if (pass(e)) write(e);
    }
    const unsubscribe = bus.subscribe((e) => pass(e) && write(e));
    const beat = setInterval(() => write({ type: 'ping', seq: bus.lastSeq, ts: ts() }), heartbeatMs);
    const cleanup = () => {
      clearInterval(beat);
      unsubscribe();
    };
    out.res.on('close', cleanup);
    req.raw.on('close', cleanup);
  });
};
