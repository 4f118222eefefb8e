import { LABELS } from '../runtime/labels.js';
import type { ContainerObservation, ContainerSummary } from '../runtime/port.js';
import type { ObservedPatch, SessionRecord } from '../store/sessions.js';

/** Crash-loop backoff, as kubelet does it: 10 s doubling to 5 min, forgotten after 10 min of clean running. */
export const BACKOFF_BASE_MS = 10_000;
export const BACKOFF_MAX_MS = 5 * 60_000;
export const BACKOFF_RESET_MS = 10 * 60_000;

export function crashBackoffMs(consecutiveCrashes: number): number {
  return Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** Math.max(0, consecutiveCrashes - 1));
}

/** The next thing to do for one session. Engine writes are create/start/stop/remove; the rest touch only the store. */
export type Step =
  | { kind: 'create' }
  | { kind: 'start'; restart: boolean }
  | { kind: 'stop' }
  | { kind: 'remove'; thenPatch?: ObservedPatch }
  | { kind: 'delete' }
  | { kind: 'observe'; patch: ObservedPatch; requeueAfterMs?: number };

export type PlanSession = Pick<
  SessionRecord,
  | 'desired'
  | 'state'
  | 'restartPolicy'
  | 'specHash'
  | 'recreate'
  | 'crashCount'
  | 'nextRestartAt'
  | 'handledFinish'
  | 'containerId'
  | 'exitCode'
  | 'finishedAt'
> &
  Partial<Pick<SessionRecord, 'checkoutState' | 'gracefulDeadline' | 'queuedAt'>>;

const ms = (iso: string | null | undefined) => (iso ? Date.parse(iso) : NaN);
/** Whether the container runs (or is paused or restarting): its session's state is `running`. */
export const live = (c: Pick<ContainerObservation, 'status'>) => c.status === 'running' || c.status === 'restarting' || c.status === 'paused';

/**
 * plan(desired, actual) → the next step. Pure and level-triggered: it looks only at the session's
 * desired state and bookkeeping and at what the engine reports now, so running it again after any
 * step, any missed event or a daemon restart gives the right answer. It never plans to stop, restart
 * or recreate a running container whose session wants it running (that is how adoption stays safe).
 */
export function plan(s: PlanSession, c: ContainerObservation | null, now: number): Step {
  if (s.desired === 'removed') return c ? { kind: 'remove' } : { kind: 'delete' };
  if (c && c.status === 'removing') return { kind: 'observe', patch: {}, requeueAfterMs: 1000 };

  if (s.desired === 'stopped') {
    if (c && live(c)) {
      // A graceful stop: the agent was asked to finish; it is stopped only at the deadline.
      const deadline = ms(s.gracefulDeadline);
      if (deadline > now) return { kind: 'observe', patch: {}, requeueAfterMs: deadline - now };
      return { kind: 'stop' };
    }
    return {
      kind: 'observe',
      patch: {
        state: 'stopped',
        containerId: c?.id ?? null,
        exitCode: c ? c.exitCode : s.exitCode,
        finishedAt: c?.finishedAt ?? s.finishedAt,
        // An exit that happens because we stopped it is never a crash, now or later.
        handledFinish: c?.finishedAt ?? s.handledFinish,
        nextRestartAt: null,
      },
    };
  }

  // desired === 'running'
  // Waiting for a slot (BERTH_MAX_RUNNING): nothing is made until admission gives it one.
  if (s.queuedAt && !c) return { kind: 'observe', patch: {} };
  // A write session's container exists only once its own checkout does: while the clone is being
  // made (or after a crash in the middle of making it, until the repair finishes), wait.
  if (s.checkoutState === 'creating' && !c) return { kind: 'observe', patch: {}, requeueAfterMs: 1000 };
  if (s.recreate) {
    if (c) return { kind: 'remove', thenPatch: { recreate: false, state: 'pending' } };
    return { kind: 'observe', patch: { recreate: false, state: 'pending' } };
  }

  if (c && (c.status === 'running' || c.status === 'paused' || c.status === 'restarting')) {
    const patch: ObservedPatch = {
      state: 'running',
      containerId: c.id,
      startedAt: c.startedAt,
      errorCode: null,
      errorMessage: null,
      exitCode: null,
      nextRestartAt: null,
    };
    let requeueAfterMs: number | undefined;
    if (s.crashCount > 0) {
      const ran = now - ms(c.startedAt);
      if (ran >= BACKOFF_RESET_MS) patch.crashCount = 0;
      else requeueAfterMs = Math.max(1000, BACKOFF_RESET_MS - ran);
    }
    if (c.status !== 'running') requeueAfterMs = 2000;
    return requeueAfterMs === undefined ? { kind: 'observe', patch } : { kind: 'observe', patch, requeueAfterMs };
  }

  // A terminal failure (missing image, bad runtime ...) waits for the user: no retry loop against it.
  if (s.state === 'failed') return { kind: 'observe', patch: {} };

  if (!c) {
    const due = ms(s.nextRestartAt);
    if (due > now) return { kind: 'observe', patch: {}, requeueAfterMs: due - now };
    return { kind: 'create' };
  }

  if (c.status === 'created') {
    if (c.labels['dev.berth.spec-hash'] !== s.specHash) return { kind: 'remove' };
    return { kind: 'start', restart: false };
  }

  // exited or dead
  if (c.finishedAt !== s.handledFinish) {
    const failure = c.exitCode !== 0 || c.oomKilled;
    const restart = s.restartPolicy === 'always' || (s.restartPolicy === 'on-failure' && failure);
    const base: ObservedPatch = {
      state: 'exited',
      containerId: c.id,
      exitCode: c.exitCode,
      finishedAt: c.finishedAt,
      handledFinish: c.finishedAt,
      nextRestartAt: null,
    };
    if (!restart) return { kind: 'observe', patch: base };
    const ran = ms(c.finishedAt) - ms(c.startedAt);
    const crashes = ran >= BACKOFF_RESET_MS ? 1 : s.crashCount + 1;
    const delay = crashBackoffMs(crashes);
    return {
      kind: 'observe',
      patch: { ...base, crashCount: crashes, nextRestartAt: new Date(now + delay).toISOString() },
      requeueAfterMs: delay,
    };
  }
  if (s.nextRestartAt === null) return { kind: 'observe', patch: {} }; // finished for good
  const due = ms(s.nextRestartAt);
  if (due > now) return { kind: 'observe', patch: {}, requeueAfterMs: due - now };
  if (c.labels['dev.berth.spec-hash'] !== s.specHash) return { kind: 'remove' };
  return { kind: 'start', restart: true };
}

export interface ResyncInput {
  /** Sessions that need a pass whatever the engine says (the store's UNSETTLED). */
  unsettled: string[];
  /** Sessions whose row records a container, with the state it records. */
  recorded: { id: string; state: PlanSession['state']; containerId: string }[];
  /** One listing of berth's containers. */
  containers: ContainerSummary[];
  /** Which of these session ids exist. */
  exists: (ids: string[]) => Set<string>;
}

/**
 * What a resync queues, from one listing: the unsettled sessions; those whose recorded container
 * is gone, belongs to another session, or runs when the row says it does not (or the reverse);
 * those with a container their row does not record. Containers of no session are orphans.
 * A settled session whose container the listing shows as its row says is left alone.
 */
export function resyncPlan(i: ResyncInput): { queue: Set<string>; orphans: ContainerSummary[] } {
  const queue = new Set(i.unsettled);
  const byId = new Map(i.containers.map((c) => [c.id, c]));
  const recorded = new Set<string>();
  for (const r of i.recorded) {
    recorded.add(r.containerId);
    const c = byId.get(r.containerId);
    if (!c || c.labels[LABELS.session] !== r.id || live(c) !== (r.state === 'running')) queue.add(r.id);
  }
  const unrecorded = i.containers.filter((c) => !recorded.has(c.id));
  const sessionOf = (c: ContainerSummary) => c.labels[LABELS.session] ?? '';
  const known = i.exists([...new Set(unrecorded.map(sessionOf).filter(Boolean))]);
  const orphans: ContainerSummary[] = [];
  for (const c of unrecorded) {
    if (known.has(sessionOf(c))) queue.add(sessionOf(c));
    else orphans.push(c);
  }
  return { queue, orphans };
}
