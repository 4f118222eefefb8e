import { BerthError, TASK_ID_ENV, type Pool, type Session, type Task } from '@berth/client-sdk/protocol';
import type { EventBus } from '../events/bus.js';
import type { Logger } from '../log.js';
import type { Clock } from '../shared/clock.js';
import type { AgentsRepo } from '../store/agents.js';
import type { PoolRecord, PoolSession, PoolsRepo } from '../store/pools.js';
import type { ProjectsRepo } from '../store/projects.js';
import type { SessionRecord, SessionsRepo } from '../store/sessions.js';
import type { TaskRecord, TasksRepo } from '../store/tasks.js';
import type { UsageRepo } from '../store/usage.js';
import type { StartOptions } from '../sessions/service.js';
import type { TaskService } from '../tasks/service.js';
import { promptOf, substitute } from './prompt.js';

/** What the pool controller needs of sessions (SessionService and the checkouts). */
export interface PoolSessions {
  start(p: { project: string; agent: string; name: string; mode: 'write' | 'read'; env: Record<string, string>; command?: string[]; restartPolicy: 'never' }, opts: StartOptions): Promise<Session>;
  stop(id: string): Promise<unknown>;
  remove(id: string, opts: { force: boolean; stop: boolean }): Promise<unknown>;
  /** Imports the session's branch into the project; the tip imported, or null. */
  importTip(s: SessionRecord): Promise<string | null>;
  /** The last lines the session's agent printed (for the note an attempt leaves). */
  tail(s: SessionRecord): Promise<string>;
  /** Squash-merges the session's branch into its base; MERGE_CONFLICT (details.paths) when it cannot. */
  squash(s: SessionRecord, message: string): Promise<string>;
}

export interface PoolControllerDeps {
  pools: PoolsRepo;
  tasks: TasksRepo;
  taskService: TaskService;
  sessions: SessionsRepo;
  agents: AgentsRepo;
  projects: ProjectsRepo;
  usage: UsageRepo;
  work: PoolSessions;
  bus: EventBus;
  clock: Clock;
  log: Logger;
  /** The public view of a pool (PoolService.view). */
  view: (p: PoolRecord) => Pool;
  /** Pools are looked at this often, and at once when something they care about happens. */
  resyncMs?: number;
}

/** A worker that completed but is still running is stopped after this (it had its chance to exit). */
const EXIT_GRACE_MS = 60_000;
/** After a session that could not even start, a pool waits this long before starting another. */
const LAUNCH_BACKOFF_MS = 30_000;
const MAX_REVIEWER_RUNS = 3;

const ended = (s: SessionRecord) => s.state === 'exited' || s.state === 'failed' || s.state === 'stopped' || s.state === 'removed';

/**
 * Makes each pool's sessions match its desired state, level-triggered like the session reconciler:
 * every pass re-reads the pool, its sessions and its tasks, and takes the next steps. A pass after a
 * berthd restart (kill -9 included) finds the same rows and the same containers, so nothing is
 * lost or started twice: a task is claimed in the transaction that inserts its session, and a
 * session is known to the pool by the row written with it.
 */
export class PoolController {
  private readonly dirty = new Set<string>();
  private wake: (() => void) | null = null;
  private readonly backoffUntil = new Map<string, number>();
  private readonly completedAt = new Map<string, number>();

  constructor(private readonly d: PoolControllerDeps) {
    d.bus.subscribe((e) => {
      if (e.type === 'session.activity' && e.data.activity.state === 'stuck') this.stuck(e.data.id, e.data.activity.reason);
      if (e.type === 'session.state' || e.type === 'task.completed' || e.type === 'task.reviewed' || e.type === 'task.released' || e.type === 'task.added' || e.type === 'task.updated') {
        this.pokeAll();
      }
    });
  }

  /** A pool's worker that stopped working gives its task up now (the supervisor saw it stuck). */
  private stuck(sessionId: string, reason: string | null | undefined): void {
    const ps = this.d.pools.sessionOf(sessionId);
    const t = ps?.role === 'worker' ? this.d.tasks.heldBy(sessionId) : undefined;
    if (!ps || !t) return;
    this.d.taskService.endAttempt(t, 'stuck', `session ${t.claim?.sessionName ?? sessionId} is stuck: ${reason ?? 'no sign of work'}`);
    this.poke(ps.pool);
  }

  poke(id: string): void {
    this.dirty.add(id);
    this.wake?.();
  }

  private pokeAll(): void {
    for (const p of this.d.pools.list()) if (p.state === 'running' || p.state === 'draining') this.dirty.add(p.id);
    this.wake?.();
  }

  async start(signal: AbortSignal): Promise<void> {
    for (const p of this.d.pools.list()) this.dirty.add(p.id);
    let last = 0;
    while (!signal.aborted) {
      const now = this.d.clock.now().getTime();
      if (now - last >= (this.d.resyncMs ?? 5000)) {
        last = now;
        for (const p of this.d.pools.list()) if (p.state !== 'done') this.dirty.add(p.id);
      }
      const ids = [...this.dirty];
      this.dirty.clear();
      for (const id of ids) {
        try {
          await this.reconcile(id);
        } catch (err) {
          this.d.log.error({ pool: id, err }, `Failed reconciling pool ${id}`);
        }
      }
      if (this.dirty.size) continue;
      // Until the next resync, or at once when poked (or stopped): one listener on `signal` per wait.
      const wait = new AbortController();
      const stop = () => wait.abort();
      signal.addEventListener('abort', stop, { once: true });
      this.wake = stop;
      await this.d.clock.sleep(Math.min(this.d.resyncMs ?? 5000, 1000), wait.signal);
      this.wake = null;
      signal.removeEventListener('abort', stop);
    }
  }

  /** One pass over one pool. */
  async reconcile(id: string): Promise<void> {
    const pool = this.d.pools.get(id);
    if (!pool) return;
    let active = 0;
    let reviewers = 0;
    for (const ps of this.d.pools.sessions(id)) {
      const s = this.d.sessions.get(ps.sessionId);
      if (!s || s.desired === 'removed') {
        if (!s) this.d.pools.dropSession(ps.sessionId);
        continue;
      }
      const keep = ps.role === 'worker' ? await this.worker(pool, ps, s) : await this.reviewer(pool, ps, s);
      if (keep === 'active') ps.role === 'worker' ? active++ : reviewers++;
    }
    const cur = this.d.pools.get(id)!;
    if (cur.state === 'running') {
      await this.reviews(cur);
      const now = this.d.clock.now().getTime();
      while (active < cur.parallel && (this.backoffUntil.get(id) ?? 0) <= now) {
        const taskId = this.d.tasks.nextClaimable(cur.project);
        if (taskId === undefined) break;
        if (!(await this.launchWorker(cur, taskId))) break;
        active++;
      }
      const counts = this.d.tasks.counts(cur.project);
      if (cur.untilEmpty && counts.open + counts.claimed + counts.review === 0 && active + reviewers === 0) {
        this.finish(cur, 'done');
      }
    } else if (cur.state === 'draining' && active + reviewers === 0) {
      this.finish(cur, 'stopped');
    }
  }

  private finish(pool: PoolRecord, state: 'done' | 'stopped'): void {
    this.d.pools.set(pool.id, { state }, this.d.clock.now().toISOString());
    this.d.log.info({ pool: pool.id }, `Pool ${pool.id} ${state}`);
    this.d.bus.publish('pool.stopped', { pool: this.d.view(this.d.pools.get(pool.id)!) });
  }

  /** One worker session: 'active' while it works on its task. */
  private async worker(pool: PoolRecord, ps: PoolSession, s: SessionRecord): Promise<'active' | 'done'> {
    const t = this.d.tasks.get(ps.taskId);
    const holds = t?.claim?.session === s.id;
    if (pool.state === 'stopped' && !ended(s)) {
      if (holds) this.d.taskService.endAttempt(t, 'released', `pool ${pool.id} was stopped`, { refund: true });
      await this.dispose(pool, ps, s);
      return 'done';
    }
    if (!ended(s)) {
      if (holds) return 'active';
      if (t && (t.state === 'review' || t.state === 'done') && t.result && !t.result.commit) {
        // Completed: it has a minute to exit by itself.
        const at = this.completedAt.get(s.id) ?? this.d.clock.now().getTime();
        this.completedAt.set(s.id, at);
        if (this.d.clock.now().getTime() - at < EXIT_GRACE_MS) return 'active';
        await this.d.work.stop(s.id);
        return 'active';
      }
      // Its lease ran out or the task was cancelled: the attempt is over, the session goes.
      await this.dispose(pool, ps, s);
      return 'done';
    }
    // The session ended.
    if (holds) {
      const output = s.state === 'failed' ? '' : await this.d.work.tail(s).catch(() => '');
      const how = s.state === 'failed' ? `could not run (${s.errorCode ?? 'failed'}: ${s.errorMessage ?? ''})` : `exited with code ${s.exitCode ?? '?'} without completing${output ? `; its last output:\n${output}` : ''}`;
      if (s.state === 'failed') this.backoffUntil.set(pool.id, this.d.clock.now().getTime() + LAUNCH_BACKOFF_MS);
      this.d.taskService.endAttempt(t, 'exited', `session ${s.name} ${how}`);
    }
    const task = this.d.tasks.get(ps.taskId);
    if (task && (task.state === 'review' || task.state === 'done') && task.result && !task.result.commit) {
      const tip = await this.d.work.importTip(s);
      this.d.tasks.set(task.id, { result: { ...task.result, branch: s.branch, commit: tip } }, this.d.clock.now().toISOString());
    }
    const after = this.d.tasks.get(ps.taskId);
    if (after?.state === 'done' && pool.autoMerge && after.result?.commit && !after.result.merged) {
      await this.merge(pool, after, s);
    }
    const final = this.d.tasks.get(ps.taskId);
    // The worker stays (stopped) while its branch waits for review or a merge by hand; otherwise it goes.
    const waits = final && ((final.state === 'review') || (final.state === 'done' && !final.result?.merged && !pool.autoMerge));
    if (!waits) await this.dispose(pool, ps, s);
    return 'done';
  }

  private async merge(pool: PoolRecord, t: TaskRecord, s: SessionRecord): Promise<void> {
    try {
      const commit = await this.d.work.squash(s, `${t.title} (berth task ${t.id})\n\n${t.result?.summary ?? ''}`.trim());
      this.d.tasks.set(t.id, { result: { ...t.result!, merged: commit } }, this.d.clock.now().toISOString());
      this.d.bus.publish('task.merged', { task: this.d.taskService.get(t.id), commit });
    } catch (err) {
      if (!(err instanceof BerthError) || err.code !== 'MERGE_CONFLICT') throw err;
      const paths = ((err.details as { paths?: string[] } | undefined)?.paths ?? []).slice(0, 50);
      const text = `merging into the base conflicts${paths.length ? ` in ${paths.join(', ')}` : ''}: bring the branch up to date with the base (merge or rebase it) and resolve them`;
      this.d.tasks.set(t.id, { state: t.attempts >= t.maxAttempts ? 'failed' : 'open', result: { ...t.result!, commit: null }, note: { at: this.d.clock.now().toISOString(), attempt: t.attempts, session: s.id, kind: 'conflict', text } }, this.d.clock.now().toISOString());
      const task = this.d.taskService.get(t.id);
      this.d.bus.publish('task.released', { task, session: { id: s.id, name: s.name }, reason: 'conflict', text });
      this.d.log.info({ pool: pool.id, task: t.id, paths }, `Task ${t.id} sent back: merge conflict`);
    }
  }

  /** A reviewer session: 'active' until its decision. */
  private async reviewer(pool: PoolRecord, ps: PoolSession, s: SessionRecord): Promise<'active' | 'done'> {
    const t = this.d.tasks.get(ps.taskId);
    const reviewing = t?.state === 'review' && t.reviewerSession === s.id;
    if (reviewing && !ended(s) && pool.state !== 'stopped') return 'active';
    if (reviewing && t && pool.state === 'stopped') this.d.tasks.set(t.id, { reviewerSession: null }, this.d.clock.now().toISOString());
    else if (reviewing && t) {
      const runs = t.notes.filter((n) => n.kind === 'changes' && n.text.startsWith('the reviewer')).length + 1;
      const text = `the reviewer ${s.name} ${s.state === 'failed' ? 'could not run' : `exited with code ${s.exitCode ?? '?'}`} without a decision`;
      this.d.tasks.set(t.id, { reviewerSession: null, ...(runs >= MAX_REVIEWER_RUNS ? { state: 'failed' as const } : {}), note: { at: this.d.clock.now().toISOString(), attempt: t.attempts, session: s.id, kind: 'changes', text } }, this.d.clock.now().toISOString());
    }
    // The decision was made (the worker's next pass merges an approved branch or lets a reopened one go).
    await this.dispose(pool, ps, s);
    return 'done';
  }

  /** Tasks waiting in review get a reviewer session each (when the pool has a reviewer). */
  private async reviews(pool: PoolRecord): Promise<void> {
    if (!pool.reviewer) return;
    for (const t of this.d.tasks.page({ project: pool.project, state: 'review', limit: 100 })) {
      if (t.reviewerSession || t.pool !== pool.id || !t.result?.commit) continue;
      await this.launchReviewer(pool, t);
    }
  }

  /** Starts the worker of task `taskId`; false when it could not (the pass stops launching). */
  private async launchWorker(pool: PoolRecord, taskId: number): Promise<boolean> {
    const name = `task-${taskId}`;
    const prior = this.d.sessions.byName(name);
    if (prior) {
      // An earlier attempt's session still there: it goes first (its work is on the branch, uncommitted files on refs/berth/wip/).
      if (!ended(prior)) return false;
      await this.d.work.remove(prior.id, { force: true, stop: true });
      this.d.pools.dropSession(prior.id);
    }
    const agent = this.d.agents.get(pool.agent);
    const t0 = this.d.tasks.get(taskId);
    if (!agent || !t0) return false;
    const task = { ...t0, attempts: t0.attempts + 1 } as Task;
    try {
      await this.d.work.start(
        { project: pool.project, agent: pool.agent, name, mode: 'write', env: taskEnv(task), command: agent.command.map((a) => substitute(a, task)), restartPolicy: 'never' },
        {
          continueBranch: true,
          onInsert: (rec) => {
            if (!this.d.taskService.claimFor(taskId, rec, pool.id)) {
              throw new BerthError('TASK_STATE', `task ${taskId} was claimed meanwhile`, { details: { id: taskId } });
            }
            this.d.pools.addSession({ sessionId: rec.id, pool: pool.id, taskId, role: 'worker', createdAt: rec.createdAt });
            this.d.taskService.claimed(taskId, rec);
          },
        },
      );
    } catch (err) {
      if (err instanceof BerthError && err.code === 'TASK_STATE') return true;
      // The session row (and with it the claim) may exist: the next pass sees it ended and ends the attempt.
      this.d.log.warn({ pool: pool.id, task: taskId, err: (err as Error).message }, `Could not start the session for task ${taskId}`);
      this.backoffUntil.set(pool.id, this.d.clock.now().getTime() + LAUNCH_BACKOFF_MS);
      return false;
    }
    this.d.log.info({ pool: pool.id, task: taskId, session: name }, `Started ${name} for task ${taskId}`);
    return true;
  }

  private async launchReviewer(pool: PoolRecord, t: TaskRecord): Promise<void> {
    const name = `review-${t.id}`;
    const prior = this.d.sessions.byName(name);
    if (prior) {
      if (!ended(prior)) return;
      await this.d.work.remove(prior.id, { force: true, stop: true });
      this.d.pools.dropSession(prior.id);
    }
    const agent = this.d.agents.get(pool.reviewer!);
    if (!agent) return;
    const task = publicView(t);
    const env = { ...taskEnv(task), BERTH_TASK_PROMPT: promptOf(task, 'reviewer'), BERTH_TASK_ROLE: 'reviewer', BERTH_TASK_BRANCH: t.result?.branch ?? `berth/task-${t.id}`, BERTH_TASK_COMMIT: t.result?.commit ?? '' };
    try {
      await this.d.work.start(
        { project: pool.project, agent: pool.reviewer!, name, mode: 'read', env, command: agent.command.map((a) => substitute(a, task, 'reviewer')), restartPolicy: 'never' },
        {
          onInsert: (rec) => {
            const cur = this.d.tasks.get(t.id);
            if (!cur || cur.state !== 'review' || cur.reviewerSession) throw new BerthError('TASK_STATE', `task ${t.id} is no longer waiting for review`);
            this.d.tasks.set(t.id, { reviewerSession: rec.id }, this.d.clock.now().toISOString());
            this.d.pools.addSession({ sessionId: rec.id, pool: pool.id, taskId: t.id, role: 'reviewer', createdAt: rec.createdAt });
            this.d.taskService.reviewing(t.id, rec);
          },
        },
      );
    } catch (err) {
      if (err instanceof BerthError && err.code === 'TASK_STATE') return;
      this.d.log.warn({ pool: pool.id, task: t.id, err: (err as Error).message }, `Could not start the reviewer for task ${t.id}`);
    }
  }

  /**
   * Removes a pool session, counting its tokens for the pool. Its commits are on its branch in the
   * project; uncommitted files, if it left any, on refs/berth/wip/<name> (a forced removal keeps them).
   */
  private async dispose(pool: PoolRecord, ps: PoolSession, s: SessionRecord): Promise<void> {
    const tokens = this.d.usage.tokens(s.id);
    try {
      await this.d.work.remove(s.id, { force: true, stop: true });
    } catch (err) {
      this.d.log.warn({ pool: pool.id, session: s.name, err: (err as Error).message }, `Could not remove pool session ${s.name}`);
      return;
    }
    this.d.pools.dropSession(ps.sessionId);
    this.completedAt.delete(s.id);
    this.d.taskService.forget(s.id);
    if (tokens) this.d.pools.set(pool.id, { tokensDelta: tokens }, this.d.clock.now().toISOString());
  }
}

function publicView(t: TaskRecord): Task {
  const { reviewerSession: _, ...task } = t;
  return task;
}

/** The environment a pool's session gets about its task. */
function taskEnv(t: Task): Record<string, string> {
  return { [TASK_ID_ENV]: String(t.id), BERTH_TASK_TITLE: t.title, BERTH_TASK_PROMPT: promptOf(t) };
}
