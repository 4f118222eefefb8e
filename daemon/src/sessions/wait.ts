import type { EventBus } from '../events/bus.js';
import type { SessionRecord, SessionsRepo } from '../store/sessions.js';

/** Resolves with the record once `pred` holds (or at the timeout / removal, with what there is). */
export function waitForSession(
sessions: Pick<SessionsRepo, 'get'>,
bus: Pick<EventBus, 'subscribe'>,
id: string,
pred: (s: SessionRecord) => boolean,
timeoutMs: number,
signal?: AbortSignal,
): Promise<SessionRecord | undefined> {
  return new Promise((resolve) => {
    let finished = false;
    const finish = () => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      unsubscribe();
      signal?.removeEventListener('abort', finish);
      resolve(sessions.get(id));
    };
    const check = () => {
      const cur = sessions.get(id);
      if (!cur || pred(cur)) finish();
    };
    const unsubscribe = bus.subscribe((e) => {
      if ((e.type === 'session.state' && e.data.session.id === id) || (e.type === 'session.removed' && e.data.id === id)) check();
    });
    const timer = setTimeout(finish, timeoutMs);
    signal?.addEventListener('abort', finish, { once: true });
    check();
  });
}
