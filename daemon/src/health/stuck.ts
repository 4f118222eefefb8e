import { execFile } from 'node:child_process';
import type { SessionActivity } from '@berth/client-sdk/protocol';
import type { EventBus } from '../events/bus.js';
import type { Logger } from '../log.js';
import type { ContainerRuntime } from '../runtime/port.js';
import type { Clock } from '../shared/clock.js';
import type { AgentsRepo } from '../store/agents.js';
import type { SessionRecord, SessionsRepo } from '../store/sessions.js';

/** CPU use (of one core) under which a silent agent counts as doing nothing. */
export const IDLE_CPU = 0.05;
/** A stuck agent left running (on-stuck notify or none) is looked at again this often, to see it work again. */
export const STUCK_RELOOK_MS = 5 * 60_000;
/** Stuck restarts in a row after which berth only notifies. */
export const MAX_STUCK_RESTARTS = 3;

export interface Signs {
  startedAt: string | null;
  lastOutputAt?: string | null;
  lastFileChangeAt?: string | null;
  lastHookAt?: string | null;
  lastCpuAt?: string | null;
}

const t = (iso: string | null | undefined) => (iso ? Date.parse(iso) : NaN);

/** The newest sign of work (ms), or NaN when there is none at all. */
export function lastSign(s: Signs): number {
  const all = [s.startedAt, s.lastOutputAt, s.lastFileChangeAt, s.lastHookAt, s.lastCpuAt].map(t).filter((x) => !Number.isNaN(x));
  return all.length ? Math.max(...all) : NaN;
}

/**
 * Whether a running session is stuck: it is not waiting for a person (Claude Code said it waits for
 * input, or its turn ended), and for `stuckAfterMs` there was no output, file change, hook or CPU
 * above IDLE_CPU. `cpuKnown`: at least two CPU samples were compared (right after a berthd restart
 * there is one, and nobody is called stuck on half the evidence).
 */
export function isStuck(activity: SessionActivity | null, signs: Signs, now: number, stuckAfterMs: number, cpuKnown: boolean): boolean {
  if (activity && (activity.state === 'waiting-input' || activity.state === 'idle' || activity.state === 'stuck')) return false;
  const last = lastSign(signs);
  return cpuKnown && !Number.isNaN(last) && now - last >= stuckAfterMs;
}

export interface StuckDeps {
  sessions: SessionsRepo;
  agents: AgentsRepo;
  runtime: ContainerRuntime;
  bus: EventBus;
  log: Logger;
  clock: Clock;
  /** AGENT_STUCK_TIMEOUT_MINUTES, in seconds: for agents that set no stuckAfterSec. */
  defaultStuckAfterSec: number;
  checkMs: number;
  /** Restarts the session's agent (the reconciler's crash-loop backoff applies). */
  restart: (id: string) => void;
}

/**
 * Watches running sessions for agents that stopped working. Cheap while agents show signs of life:
 * a session is looked at closely (its newest output from the engine, a file newer than the last
 * sign in its workspace, a CPU sample) only once it has been quiet for half its stuck timeout, so
 * busy agents cost no engine call. Timers are timestamps in SQLite: a berthd restart neither
 * forgets a stuck agent nor calls one stuck because berthd was down (the evidence is gathered
 * again, and CPU needs two samples taken by this berthd).
 */
export class StuckMonitor {
  private readonly cpu = new Map<string, { ns: number; at: number }>();
  /**
   * When a quiet session is worth a close look again: when it could first be called stuck (its
   * last sign + the timeout), or, once stuck, STUCK_RELOOK_MS later (to see it work again). In memory: a
   * restarted berthd looks at every quiet session once more.
   */
  private readonly nextLook = new Map<string, number>();

  constructor(private readonly d: StuckDeps) {}

  async start(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      await this.d.clock.sleep(this.d.checkMs, signal);
      if (signal.aborted) break;
      try {
        await this.check();
      } catch (err) {
        this.d.log.warn({ err: (err as Error).message }, 'Stuck check failed');
      }
    }
  }

  /** One pass over the running sessions. */
  async check(): Promise<void> {
    const seen = new Set<string>();
    for (const id of this.d.sessions.runningIds()) {
      seen.add(id);
      const s = this.d.sessions.get(id);
      if (s?.containerId && s.state === 'running') await this.look(s, s.containerId);
    }
    for (const id of [...this.cpu.keys()]) if (!seen.has(id)) this.cpu.delete(id);
    for (const id of [...this.nextLook.keys()]) if (!seen.has(id)) this.nextLook.delete(id);
  }

  private async look(s: SessionRecord, containerId: string): Promise<void> {
    const now = this.d.clock.now().getTime();
    const agent = this.d.agents.get(s.agent);
    const stuckAfterMs = (agent?.stuckAfterSec ?? this.d.defaultStuckAfterSec) * 1000;
    const a = s.activity;
    const signs: Signs = { startedAt: s.startedAt, ...(a ?? {}) };
    if (a && (a.state === 'waiting-input' || a.state === 'idle')) {
      this.cpu.delete(s.id);
      return;
    }
    // Busy (or a container younger than the sign it left): nothing to look at.
    if (now - lastSign(signs) < stuckAfterMs / 2) {
      this.nextLook.delete(s.id);
      if (s.stuckRestarts > 0 && lastSign({ ...signs, startedAt: null }) > t(s.startedAt)) this.d.sessions.resetStuckRestarts(s.id);
      return;
    }
    if ((this.nextLook.get(s.id) ?? 0) > now) return;
    const since = new Date(lastSign(signs)).toISOString();
    const fresh: Partial<SessionActivity> = {};
    // Output: the newest line since the last sign, from the engine's own log.
    for await (const line of this.d.runtime.logs(containerId, { tail: 1, since })) {
      if (t(line.ts) > lastSign(signs)) fresh.lastOutputAt = line.ts;
    }
    // Files: any file in its workspace newer than the last sign (find stops at the first).
    if (await changedSince(s.spec.workspace.source, lastSign(signs))) fresh.lastFileChangeAt = new Date(now).toISOString();
    // CPU: two samples, this check's and the last one's.
    const ns = await this.d.runtime.cpuTimeNs(containerId);
    const prev = this.cpu.get(s.id);
    let cpuKnown = false;
    if (ns !== null) {
      this.cpu.set(s.id, { ns, at: now });
      if (prev && now > prev.at) {
        cpuKnown = true;
        if ((ns - prev.ns) / ((now - prev.at) * 1e6) > IDLE_CPU) signs.lastCpuAt = new Date(now).toISOString();
      }
    } else cpuKnown = true; // a runtime that cannot tell: judge by the rest
    const merged: Signs = { ...signs, ...fresh };
    const base: SessionActivity = a ?? { state: 'starting', since: s.startedAt ?? new Date(now).toISOString(), reason: null };
    if (Object.keys(fresh).length || signs.lastCpuAt) {
      const working = base.state === 'stuck' || base.state === 'starting';
      const next: SessionActivity = { ...base, ...fresh, ...(working ? { state: 'working', since: new Date(now).toISOString(), reason: 'output, files or CPU' } : {}) };
      this.d.sessions.setActivity(s.id, next);
      if (working && base.state !== 'starting') this.d.bus.publish('session.activity', { id: s.id, name: s.name, activity: next, previous: base.state });
      this.nextLook.delete(s.id);
      return;
    }
    if (!isStuck(a, merged, now, stuckAfterMs, cpuKnown)) {
      // Quiet, not stuck (yet, or already): no closer look until it could change.
      this.nextLook.set(s.id, a?.state === 'stuck' ? now + Math.max(stuckAfterMs, STUCK_RELOOK_MS) : Math.max(lastSign(merged) + stuckAfterMs, now + 1));
      return;
    }
    this.nextLook.set(s.id, now + Math.max(stuckAfterMs, STUCK_RELOOK_MS));
    const quiet = Math.round((now - lastSign(merged)) / 1000);
    const stuck: SessionActivity = { ...base, state: 'stuck', since: new Date(now).toISOString(), reason: `no output, file change, hook or CPU for ${quiet}s` };
    this.d.sessions.setActivity(s.id, stuck);
    this.d.bus.publish('session.activity', { id: s.id, name: s.name, activity: stuck, previous: base.state });
    const onStuck = agent?.onStuck ?? 'restart';
    if (onStuck === 'restart' && s.stuckRestarts < MAX_STUCK_RESTARTS) {
      this.d.log.warn({ sessionId: s.id, quietSec: quiet, stuckRestarts: s.stuckRestarts + 1 }, 'Restarting stuck agent');
      this.d.restart(s.id);
    } else {
      this.d.log.warn({ sessionId: s.id, quietSec: quiet, onStuck, stuckRestarts: s.stuckRestarts }, 'Agent is stuck');
    }
  }
}

/**
 * Whether any file under `dir` (not .git, not following links, one file system) changed after
 * `sinceMs`. `find -quit` stops at the first; a deadline bounds a huge tree.
 */
function changedSince(dir: string, sinceMs: number): Promise<boolean> {
  // Whole seconds: find misreads a fraction after @ (it took every file for newer). Rounding down
  // can only count a change of the same second as new, never miss one.
  const stamp = `@${Math.floor(sinceMs / 1000)}`;
  return new Promise((resolve) => {
    execFile(
      'find',
      ['-P', dir, '-xdev', '(', '-name', '.git', '-prune', ')', '-o', '-newermt', stamp, '-print', '-quit'],
      { timeout: 20_000, maxBuffer: 64 * 1024 },
      (_err, stdout) => resolve(stdout.trim().length > 0),
    );
  });
}
