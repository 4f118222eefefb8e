import type { BerthClient } from '../client.js';
import { daemonAway } from '../events.js';
import { BerthError, type Session, type SessionState } from '../protocol/index.js';
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
 * Waits until `done(session)` (the SDK's waitFor: events about the session, read again after each
 * reconnect, so a berthd restart loses nothing). Null when the session was removed, or when
 * `signal` aborted.
 */
export async function waitForSession(c: BerthClient, id: string, done: (s: Session) => boolean, signal: AbortSignal): Promise<Session | null> {
  // By id, prefix or name here; waitFor follows the full id.
  const s = await c.sessions.get({ id }, { signal });
  for (let pause = 250; ; pause = Math.min(pause * 2, 2000)) {
    try {
      return await c.waitFor(s.id, done, { signal });
    } catch (err) {
      if (signal.aborted || (err instanceof BerthError && err.code === 'SESSION_NOT_FOUND')) return null;
      // berthd went away in a way the SDK's own reconnecting did not ride out (its event stream
      // ended, which waitFor reports as ABORTED though nobody aborted): wait for it again.
      if (!daemonAway(err) && !(err instanceof BerthError && err.code === 'ABORTED')) throw err;
      await new Promise((r) => setTimeout(r, pause));
    }
  }
}

/**
 * Prints the session's output as it comes (stdout and stderr to theirs) until it is finished for
 * good: across container restarts by its policy, and across berthd restarts. Returns the session as
 * it ended, or null when aborted or removed.
 *
 * berth's log store keeps a follow open until the session is removed, so the end is the session's:
 * once it is finished for good, the follow stops and one last read (which berthd answers once its
 * store holds all the container printed) prints what had not come yet. A session read from the
 * engine (no store) ends its stream with each container: then this waits for the next one, or for
 * the end.
 */
export async function followSession(c: BerthClient, out: Out, id: string, signal: AbortSignal): Promise<Session | null> {
  // Where printing got to: the last line's time, and how many lines of that time were printed, so
  // a read again from there skips exactly those.
  let since: string | undefined;
  let atSince = 0;
  const ctl = new AbortController();
  const onAbort = () => ctl.abort();
  signal.addEventListener('abort', onAbort, { once: true });
  let ended: Session | null | undefined;
  const done = waitForSession(c, id, finishedForGood, ctl.signal).then((s) => {
    ended = s;
    ctl.abort();
  });
  done.catch(() => {});
  const read = async (follow: boolean, stop: AbortSignal): Promise<number> => {
    const from = since;
    let skip = atSince;
    let got = 0;
    for await (const l of c.logs(id, { follow, signal: stop, ...(from ? { since: from } : {}) })) {
      if (from !== undefined && l.ts === from && skip > 0) {
        skip--;
        continue;
      }
      if (l.ts === since) atSince++;
      else {
        since = l.ts;
        atSince = 1;
      }
      got++;
      if (out.json) out.printJson(l);
      else if (l.stream === 'stderr') out.printErr(`${l.line}\n`);
      else out.print(`${l.line}\n`);
    }
    return got;
  };
  /** The session ended for good: the lines the follow had not brought yet, then the session. */
  const finish = async (s: Session | null): Promise<Session | null> => {
    if (s && !signal.aborted) await read(false, signal).catch(() => 0);
    return s;
  };
  try {
    for (;;) {
      let got = 0;
      try {
        got = await read(true, ctl.signal);
      } catch (err) {
        if (!ctl.signal.aborted) throw err;
      }
      if (signal.aborted) return null;
      if (ended !== undefined) return await finish(ended);
      // The stream ended by itself (the engine's, with its container): finished for good, or
      // running again by its restart policy (or berthd has not seen the end yet: then nothing new
      // came, and the next look waits a moment).
      const s = await waitForSession(c, id, (x) => finishedForGood(x) || x.state === 'running', ctl.signal);
      if (ended !== undefined) return await finish(ended);
      if (!s || finishedForGood(s)) return await finish(s);
      if (!got) await new Promise((r) => setTimeout(r, 500));
    }
  } finally {
    signal.removeEventListener('abort', onAbort);
    ctl.abort();
  }
}

export type { SessionState };
