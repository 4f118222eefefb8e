import { BerthError, type ParamsOf, type SessionList } from '@berth/client-sdk/protocol';
import { JsonText } from '../shared/json-text.js';
import type { SessionsRepo } from '../store/sessions.js';

/** The opaque cursor of a page: where the last item was in creation order. */
interface Cursor {
  c: string;
  i: string;
}

/**
 * A page of sessions in creation order, filtered by the server (project, state, active). The items
 * are the JSON texts the store wrote, joined: the page goes out without being rebuilt as objects.
 */
export function listSessions(sessions: Pick<SessionsRepo, 'page'>, p: ParamsOf<'sessions.list'>): JsonText<SessionList> {
  const limit = p.limit ?? 100;
  let after: { createdAt: string; id: string } | undefined;
  if (p.cursor) {
    try {
      const c = JSON.parse(Buffer.from(p.cursor, 'base64url').toString('utf8')) as Cursor;
      if (typeof c.c !== 'string' || typeof c.i !== 'string') throw new Error('bad cursor');
      after = { createdAt: c.c, id: c.i };
    } catch {
      throw new BerthError('INVALID_PARAMS', 'cursor is not one this daemon handed out', { details: { cursor: p.cursor } });
    }
  }
  const rows = sessions.page({
    ...(p.project ? { project: p.project } : {}),
    ...(p.state ? { state: p.state } : {}),
    ...(p.active ? { active: true } : {}),
    limit: limit + 1,
    ...(after ? { after } : {}),
  });
  const items = rows.slice(0, limit);
  const last = items.at(-1);
  const nextCursor =
    rows.length > limit && last ? Buffer.from(JSON.stringify({ c: last[0], i: last[1] } satisfies Cursor)).toString('base64url') : null;
  return new JsonText(`{"items":[${items.map((r) => r[2]).join(',')}],"nextCursor":${JSON.stringify(nextCursor)}}`);
}
