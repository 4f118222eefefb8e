import type { BerthClient } from '../client.js';
import type { Session, SessionState } from '../protocol/index.js';
import { followEvents } from './commands/watch.js';
import type { Out } from './output.js';

/** Done for good: not running, and no restart coming by its policy. */
export function finishedForGood(s: Session): boolean {
  return (s.state === 'exited' || s.state === 'failed' || s.state === 'stopped') && !s.nextRestartAt && !s.queued;
}

/** The exit code a CLI gives back for a finished session: the agent's, else 1 for a failure. */
export function exitCodeOf(s: Session): number {
  if (s.state === 'exited') return s.exitCode ?? 0;
  return s.state === 'failed' ? 1 : 0;
}

/**
 * Waits until `done(session)`: checked at once, on every event about the session, and every 2 s
 * besides (so an event missed while berthd restarted costs at most that). Null when the session
 * was removed, or when `signal` aborted.
 */
export async function waitForSession(c: BerthClient, id: string, done: (s: Session) => boolean, signal: AbortSignal): Promise<Session | null> {
  let s = await c.sessions.get({ id });
  if (done(s)) return s;
  const ctl = new AbortController();
  const stop = () => ctl.abort();
  signal.addEventListener('abort', stop, { once: true });
  const events = followEvents(c, ctl.signal)[Symbol.asyncIterator]();
  try {
    let next = events.next();
    for (;;) {
      const tick = new Promise<'tick'>((r) => setTimeout(r, 2000, 'tick').unref());
      const got = await Promise.race([next, tick]);
      if (signal.aborted) return null;
      if (got !== 'tick') {
        if (got.done) return null;
        next = events.next();
        const e = got.value;
        if (e.type === 'session.removed' && e.data.id === s.id) return null;
        if (!e.type.startsWith('session.')) continue;
      }
      try {
        s = await c.sessions.get({ id: s.id });
      } catch (err) {
        if ((err as { code?: string }).code === 'SESSION_NOT_FOUND') return null;
        continue; // berthd restarting: the events stream waits for it
      }
      if (done(s)) return s;
    }
  } finally {
    signal.removeEventListener('abort', stop);
    ctl.abort();
    await events.return?.(undefined).catch(() => {});
  }
}

/**
 * Prints the session's output as it comes (stdout and stderr to theirs) until it is finished for
 * good: across container restarts by its policy, and across berthd restarts. Returns the session as
 * it ended, or null when aborted or removed.
 */
export async function followSession(c: BerthClient, out: Out, id: string, signal: AbortSignal): Promise<Session | null> {
  let since: string | undefined;
  for (;;) {
    let got = 0;
    for await (const l of c.logs(id, { follow: true, signal, ...(since ? { since } : {}) })) {
      if (l.ts === since) continue;
      since = l.ts;
      got++;
      if (out.json) out.printJson(l);
      else if (l.stream === 'stderr') out.printErr(`${l.line}\n`);
      else out.print(`${l.line}\n`);
    }
    if (signal.aborted) return null;
    // The container ended: finished for good, or running again by its restart policy (or berthd has
    // not seen the end yet: then nothing new came, and the next look waits a moment).
    const s = await waitForSession(c, id, (x) => finishedForGood(x) || x.state === 'running', signal);
    if (!s || finishedForGood(s)) return s;
    if (!got) await new Promise((r) => setTimeout(r, 500));
  }
}

export type { SessionState };
