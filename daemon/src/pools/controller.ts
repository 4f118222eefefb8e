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
  /** Whether the branch, from its base to `tip`, changes anything under `path`. */
  touches(s: SessionRecord, tip: string, path: string): Promise<boolean>;
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
/** A merge the main checkout is not ready for (dirty, another branch) is tried again after this. */
const MERGE_RETRY_MS = 30_000;

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
  private readonly mergeRetryAt = new Map<number, number>();
  /** Done tasks the pool leaves for a person to merge. */
  private readonly unmergeable = new Set<number>();
  private readonly warnedNames = new Set<string>();

  /** Config `resyncSec` changed live: taken at the next pass. */
  setResyncMs(ms: number): void {
    this.d.resyncMs = ms;
  }

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
    if (!ps) return;
    if (ps.role === 'worker') {
      const t = this.d.tasks.heldBy(sessionId);
      if (t) this.d.taskService.endAttempt(t, 'stuck', `session ${t.claim?.sessionName ?? sessionId} is stuck: ${reason ?? 'no sign of work'}`);
    } else {
      // A reviewer that stopped working gives the review up; another reviewer takes it.
      const t = this.d.tasks.reviewedBy(sessionId);
      const now = this.d.clock.now().toISOString();
      if (t) this.d.tasks.set(t.id, { reviewerSession: null, note: { at: now, attempt: t.attempts, session: sessionId, kind: 'stuck', text: `the reviewer is stuck: ${reason ?? 'no sign of work'}` } }, now);
    }
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
    let merging = 0;
    for (const ps of this.d.pools.sessions(id)) {
      const s = this.d.sessions.get(ps.sessionId);
      if (!s || s.desired === 'removed') {
        if (!s) this.d.pools.dropSession(ps.sessionId);
        continue;
      }
      let keep: 'active' | 'done' | 'merging';
      try {
        keep = ps.role === 'worker' ? await this.worker(pool, ps, s) : await this.reviewer(pool, ps, s);
      } catch (err) {
        // One session's trouble (git, the engine) never holds up the others: it is looked at again next pass.
        this.d.log.warn({ pool: id, session: s.name, err: (err as Error).message }, `Pool ${id}: could not settle session ${s.name}`);
        keep = ended(s) ? 'done' : 'active';
      }
      if (keep === 'active') ps.role === 'worker' ? active++ : reviewers++;
      if (keep === 'merging') merging++;
    }
    const cur = this.d.pools.get(id)!;
    if (cur.state === 'running') {
      reviewers += await this.reviews(cur, cur.parallel - reviewers);
      const now = this.d.clock.now().getTime();
      // Re-read each time: a pools.stop while a start waited ends the launching.
      while (active < cur.parallel && (this.backoffUntil.get(id) ?? 0) <= now && this.d.pools.get(id)?.state === 'running') {
        const taskId = this.d.tasks.nextClaimable(cur.project);
        if (taskId === undefined) break;
        if (!(await this.launchWorker(cur, taskId))) break;
        active++;
      }
      // Empty: nothing this pool could start, nothing it works on, waits to review or to merge. Tasks blocked for
      // good (a dependency failed or was cancelled) do not keep it running.
      if (cur.untilEmpty && active + reviewers + merging === 0 && this.d.tasks.nextClaimable(cur.project) === undefined && this.d.tasks.pendingOf(cur.id) === 0) {
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

  /** One worker session: 'active' while it works on its task, 'merging' while its done task waits for the pool's merge. */
  private async worker(pool: PoolRecord, ps: PoolSession, s: SessionRecord): Promise<'active' | 'done' | 'merging'> {
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
      let tip: string | null;
      try {
        tip = await this.d.work.importTip(s);
      } catch (err) {
        if (!(err instanceof BerthError)) throw err;
        // git refused the branch (malformed objects, a checkout it cannot read): retrying will not help.
        tip = null;
        this.sendBack(task, s, 'failed', `berth could not take the branch into the project (${err.code}): ${err.message}`);
      }
      if (tip) this.d.tasks.set(task.id, { result: { ...task.result, branch: s.branch, commit: tip } }, this.d.clock.now().toISOString());
      else if (this.d.tasks.get(task.id)?.state !== 'open') this.sendBack(task, s, 'failed', `session ${s.name} completed the task with no branch of its own to take the work from`);
    }
    const after = this.d.tasks.get(ps.taskId);
    if (after?.state === 'done' && pool.autoMerge && after.result?.commit && !after.result.merged && !this.unmergeable.has(after.id)) {
      await this.merge(pool, after, s);
    }
    const final = this.d.tasks.get(ps.taskId);
    // The worker stays (stopped) while its branch waits for review or a merge by hand; otherwise it goes.
    const waits = final && (final.state === 'review' || (final.state === 'done' && !final.result?.merged));
    if (!waits) await this.dispose(pool, ps, s);
    return final?.state === 'done' && pool.autoMerge && !final.result?.merged && !this.unmergeable.has(final.id) ? 'merging' : 'done';
  }

  private async merge(pool: PoolRecord, t: TaskRecord, s: SessionRecord): Promise<void> {
    const now = this.d.clock.now();
    if ((this.mergeRetryAt.get(t.id) ?? 0) > now.getTime()) return;
    // Merged by hand (`berth merge task-N`) since: that is the merge.
    if (s.merged && s.merged.branchTip === t.result?.commit) {
      this.merged(t, s.merged.commit);
      return;
    }
    // berth's own files (the watched .berth/tasks.yaml) change only by a person's merge: an agent's
    // branch never adds tasks for the next agents by itself.
    if (t.result?.commit && (await this.d.work.touches(s, t.result.commit, '.berth'))) {
      this.d.tasks.set(t.id, { result: { ...t.result, merged: null }, note: { at: now.toISOString(), attempt: t.attempts, session: s.id, kind: 'unmerged', text: `not merged by the pool: the branch changes .berth/; merge it by hand (\`berth merge ${s.name}\`) if you want that` } }, now.toISOString());
      this.unmergeable.add(t.id);
      return;
    }
    try {
      const commit = await this.d.work.squash(s, `${t.title} (berth task ${t.id})\n\n${t.result?.summary ?? ''}`.trim());
      this.merged(t, commit);
    } catch (err) {
      if (!(err instanceof BerthError)) throw err;
      if (err.code !== 'MERGE_CONFLICT') {
        // The main checkout is dirty or on another branch, or git failed: the merge waits (the task stays done).
        this.mergeRetryAt.set(t.id, now.getTime() + MERGE_RETRY_MS);
        this.d.log.warn({ pool: pool.id, task: t.id, code: err.code }, `Pool ${pool.id}: merging task ${t.id} waits: ${err.message}`);
        return;
      }
      const paths = ((err.details as { paths?: string[] } | undefined)?.paths ?? []).slice(0, 50);
      this.sendBack(t, s, 'conflict', `merging into the base conflicts${paths.length ? ` in ${paths.join(', ')}` : ''}: bring the branch up to date with the base (merge or rebase it) and resolve them`);
      this.d.log.info({ pool: pool.id, task: t.id, paths }, `Task ${t.id} sent back: merge conflict`);
    }
  }

  private merged(t: TaskRecord, commit: string): void {
    this.mergeRetryAt.delete(t.id);
    this.d.tasks.set(t.id, { result: { ...t.result!, merged: commit } }, this.d.clock.now().toISOString());
    this.d.bus.publish('task.merged', { task: this.d.taskService.get(t.id), commit });
  }

  /** A completed task goes back to open (failed at maxAttempts): its work could not be taken as it is. */
  private sendBack(t: TaskRecord, s: SessionRecord, kind: 'conflict' | 'failed', text: string): void {
    const now = this.d.clock.now().toISOString();
    this.d.tasks.set(t.id, { state: t.attempts >= t.maxAttempts ? 'failed' : 'open', result: { ...t.result!, commit: null }, note: { at: now, attempt: t.attempts, session: s.id, kind, text } }, now);
    const task = this.d.taskService.get(t.id);
    this.d.bus.publish('task.released', { task, session: { id: s.id, name: s.name }, reason: kind, text });
    if (task.state === 'failed') this.d.bus.publish('task.failed', { task });
  }

  /** A reviewer session: 'active' until its decision. */
  private async reviewer(pool: PoolRecord, ps: PoolSession, s: SessionRecord): Promise<'active' | 'done'> {
    const t = this.d.tasks.get(ps.taskId);
    const reviewing = t?.state === 'review' && t.reviewerSession === s.id;
    if (reviewing && !ended(s) && pool.state !== 'stopped') return 'active';
    if (reviewing && t && pool.state === 'stopped') this.d.tasks.set(t.id, { reviewerSession: null }, this.d.clock.now().toISOString());
    else if (reviewing && t) {
      const runs = t.notes.filter((n) => (n.kind === 'changes' || n.kind === 'stuck') && n.text.startsWith('the reviewer')).length + 1;
      const text = `the reviewer ${s.name} ${s.state === 'failed' ? 'could not run' : `exited with code ${s.exitCode ?? '?'}`} without a decision`;
      this.d.tasks.set(t.id, { reviewerSession: null, ...(runs >= MAX_REVIEWER_RUNS ? { state: 'failed' as const } : {}), note: { at: this.d.clock.now().toISOString(), attempt: t.attempts, session: s.id, kind: 'changes', text } }, this.d.clock.now().toISOString());
    }
    // The decision was made (the worker's next pass merges an approved branch or lets a reopened one go).
    await this.dispose(pool, ps, s);
    return 'done';
  }

  /** Tasks of this pool waiting in review get a reviewer session each, up to `room` at once; returns how many started. */
  private async reviews(pool: PoolRecord, room: number): Promise<number> {
    if (!pool.reviewer || room <= 0) return 0;
    let started = 0;
    for (const t of this.d.tasks.awaitingReview(pool.id, room)) {
      if (await this.launchReviewer(pool, t)) started++;
    }
    return started;
  }

  /** Starts the worker of task `taskId`; false when it could not (the pass stops launching). */
  private async launchWorker(pool: PoolRecord, taskId: number): Promise<boolean> {
    const name = `task-${taskId}`;
    if (!(await this.clearName(pool, name))) return false;
    const agent = this.d.agents.get(pool.agent);
    const t0 = this.d.tasks.get(taskId);
    if (!agent || !t0) return false;
    const task = { ...t0, attempts: t0.attempts + 1 } as Task;
    try {
      await this.d.work.start(
        { project: pool.project, agent: pool.agent, name, mode: 'write', env: taskEnv(task), command: agent.command.map((a) => substitute(a, task)), restartPolicy: 'never' },
        {
          continueBranch: true,
          ownCheckout: true,
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

  /**
   * Frees a session name for the next attempt: an ended session of this pool by that name goes (its
   * work is on the branch, uncommitted files on refs/berth/wip/). A session that is not the pool's
   * is never touched: the launch waits (and says so) until its owner renames or removes it.
   */
  private async clearName(pool: PoolRecord, name: string): Promise<boolean> {
    const prior = this.d.sessions.byName(name);
    if (!prior) return true;
    if (this.d.pools.sessionOf(prior.id)?.pool !== pool.id) {
      if (!this.warnedNames.has(name)) this.d.log.warn({ pool: pool.id, session: name }, `Pool ${pool.id} cannot start ${name}: a session not of this pool has that name`);
      this.warnedNames.add(name);
      return false;
    }
    if (!ended(prior)) return false;
    await this.d.work.remove(prior.id, { force: true, stop: true });
    this.d.pools.dropSession(prior.id);
    return true;
  }

  private async launchReviewer(pool: PoolRecord, t: TaskRecord): Promise<boolean> {
    const name = `review-${t.id}`;
    if (!(await this.clearName(pool, name))) return false;
    const agent = this.d.agents.get(pool.reviewer!);
    if (!agent) return false;
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
      if (!(err instanceof BerthError && err.code === 'TASK_STATE')) this.d.log.warn({ pool: pool.id, task: t.id, err: (err as Error).message }, `Could not start the reviewer for task ${t.id}`);
      return false;
    }
    return true;
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
