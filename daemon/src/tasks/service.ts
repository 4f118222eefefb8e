import {
  BerthError,
  DEFAULT_TASK_LEASE_SEC,
  DEFAULT_TASK_MAX_ATTEMPTS,
  MAX_TASK_BODY,
  MAX_TASK_NOTE,
  MAX_TASK_TITLE,
  type ParamsOf,
  type BridgeTaskMethods,
  type Task,
  type TaskFileEntry,
  type TaskImportResult,
  type TaskList,
  type TaskNote,
} from '@berth/client-sdk/protocol';
import type { EventBus } from '../events/bus.js';
import type { Logger } from '../log.js';
import type { Clock } from '../shared/clock.js';
import type { PoolsRepo } from '../store/pools.js';
import type { ProjectsRepo } from '../store/projects.js';
import type { SessionRecord } from '../store/sessions.js';
import { publicTask, type Lease, type TaskRecord, type TasksRepo } from '../store/tasks.js';
import { parseTaskFile } from './file.js';

export interface TaskServiceDeps {
  tasks: TasksRepo;
  pools: PoolsRepo;
  projects: ProjectsRepo;
  bus: EventBus;
  clock: Clock;
  log: Logger;
  /** Writes (or with null removes) a file in the session's bridge directory, the container's /host. */
  hostFile?: (sessionId: string, name: string, text: string | null) => void;
  /** Whether a session still exists and may run (a lease held by one that does not is ended at once). */
  sessionAlive: (id: string) => boolean;
  /** How often leases are checked (ms). */
  checkMs?: number;
}

type Answer<M extends keyof BridgeTaskMethods> = BridgeTaskMethods[M]['result'];

export const TASK_HOST_FILE = 'task.json';
const MAX_IMPORT_ENTRIES = 10_000;

const bytes = (s: string) => Buffer.byteLength(s, 'utf8');

/** A summary, reason or note from an agent: bounded, control characters but newline and tab dropped. */
function agentText(kind: string, s: string): string {
  if (bytes(s) > MAX_TASK_NOTE) throw new BerthError('TASK_TOO_LARGE', `${kind} is ${bytes(s)} bytes; the limit is ${MAX_TASK_NOTE}`, { details: { field: kind, bytes: bytes(s) } });
  return s.replace(/[\u0000-\u0008\u000b-\u001f\u007f]/g, '');
}

function checkSizes(t: { title?: string; body?: string }): void {
  if (t.title !== undefined && (t.title.trim() === '' || t.title.length > MAX_TASK_TITLE)) {
    throw new BerthError(t.title.trim() === '' ? 'INVALID_PARAMS' : 'TASK_TOO_LARGE', `a task title is 1 to ${MAX_TASK_TITLE} characters (this one ${t.title.length})`, { details: { field: 'title' } });
  }
  if (t.body !== undefined && bytes(t.body) > MAX_TASK_BODY) {
    throw new BerthError('TASK_TOO_LARGE', `the task body is ${bytes(t.body)} bytes; the limit is ${MAX_TASK_BODY}`, { details: { field: 'body', bytes: bytes(t.body) } });
  }
}

/**
 * The backlog: tasks people add (RPC, files) and agents claim through their bridge. Who holds what
 * is only ever changed in the store's transactions; this class decides what a change means (an
 * attempt that ends reopens the task or, at maxAttempts, fails it) and tells everyone (task.* events,
 * the /host/task.json of a session a pool started for its task).
 */
export class TaskService {
  /** When each session's lease was last extended by its traffic (ms), so traffic costs no write per request. */
  private readonly touched = new Map<string, number>();
  /** Leases ask for by claim (seconds), per session, so a heartbeat keeps the length the agent chose. */
  private readonly leases = new Map<string, number>();

  constructor(private readonly d: TaskServiceDeps) {}

  private now(): string {
    return this.d.clock.now().toISOString();
  }

  private leaseUntil(sessionId: string, leaseSec?: number): Lease {
    const sec = leaseSec ?? this.leases.get(sessionId) ?? DEFAULT_TASK_LEASE_SEC;
    if (leaseSec !== undefined) this.leases.set(sessionId, leaseSec);
    return { until: new Date(this.d.clock.now().getTime() + sec * 1000).toISOString(), sec };
  }


  private mustGet(id: number): TaskRecord {
    const t = this.d.tasks.get(id);
    if (!t) throw new BerthError('TASK_NOT_FOUND', `no task ${id}`, { details: { id } });
    return t;
  }

  private view(id: number): Task {
    return publicTask(this.mustGet(id));
  }

  private checkDeps(project: string, id: number | null, deps: readonly number[]): void {
    const known = this.d.tasks.existing(project, deps);
    const missing = deps.filter((d) => !known.has(d));
    if (missing.length) {
      throw new BerthError('TASK_DEPENDENCY_INVALID', `no task ${missing.join(', ')} in project ${project}`, { details: { missing } });
    }
    if (id !== null) {
      const cyclic = deps.filter((d) => d === id || this.d.tasks.reaches(d, id));
      if (cyclic.length) throw new BerthError('TASK_DEPENDENCY_INVALID', `task ${id} depending on ${cyclic.join(', ')} makes a cycle`, { details: { cyclic } });
    }
  }

  // ---- people (JSON-RPC on berthd's socket) ----

  add(p: ParamsOf<'tasks.add'>): Task {
    if (!this.d.projects.get(p.project)) throw new BerthError('PROJECT_NOT_FOUND', `no project named ${p.project}`, { details: { name: p.project } });
    checkSizes(p);
    const deps = [...new Set(p.dependsOn ?? [])];
    const id = this.d.tasks.transaction(() => {
      this.checkDeps(p.project, null, deps);
      return this.d.tasks.insert(
        { project: p.project, key: null, title: p.title, body: p.body ?? '', priority: p.priority ?? 0, labels: p.labels ?? [], dependsOn: deps, maxAttempts: p.maxAttempts ?? DEFAULT_TASK_MAX_ATTEMPTS },
        this.now(),
      );
    });
    const task = this.view(id);
    this.d.bus.publish('task.added', { task });
    return task;
  }

  list(p: ParamsOf<'tasks.list'>): TaskList {
    const limit = p.limit ?? 100;
    let afterId: number | undefined;
    if (p.cursor !== undefined) {
      afterId = Number(Buffer.from(p.cursor, 'base64url').toString('utf8'));
      if (!Number.isSafeInteger(afterId)) throw new BerthError('INVALID_PARAMS', 'cursor is not one this daemon handed out', { details: { cursor: p.cursor } });
    }
    const rows = this.d.tasks.page({ ...(p.project ? { project: p.project } : {}), ...(p.state ? { state: p.state } : {}), limit: limit + 1, ...(afterId !== undefined ? { afterId } : {}) });
    const items = rows.slice(0, limit).map(publicTask);
    const last = items.at(-1);
    return { items, nextCursor: rows.length > limit && last ? Buffer.from(String(last.id)).toString('base64url') : null };
  }

  get(id: number): Task {
    return this.view(id);
  }

  update(p: ParamsOf<'tasks.update'>): Task {
    const t = this.mustGet(p.id);
    checkSizes(p);
    this.d.tasks.transaction(() => {
      if (p.dependsOn) {
        const deps = [...new Set(p.dependsOn)];
        this.checkDeps(t.project, t.id, deps);
        this.d.tasks.setDeps(t.id, deps);
      }
      this.d.tasks.update(t.id, { ...(p.title !== undefined ? { title: p.title } : {}), ...(p.body !== undefined ? { body: p.body } : {}), ...(p.priority !== undefined ? { priority: p.priority } : {}), ...(p.labels ? { labels: p.labels } : {}), ...(p.maxAttempts !== undefined ? { maxAttempts: p.maxAttempts } : {}) }, this.now());
      if (p.reopen) {
        if (t.state !== 'failed' && t.state !== 'cancelled' && t.state !== 'done') {
          throw new BerthError('TASK_STATE', `task ${t.id} is ${t.state}; only a failed, cancelled or done task is reopened`, { details: { id: t.id, state: t.state } });
        }
        // A task reopened by hand gets its attempts afresh.
        this.d.tasks.update(t.id, { attempts: 0 }, this.now());
        this.d.tasks.set(t.id, { state: 'open', note: { at: this.now(), attempt: t.attempts, session: null, kind: 'reopened', text: 'reopened by hand' } }, this.now());
      }
    });
    const task = this.view(t.id);
    this.d.bus.publish('task.updated', { task });
    return task;
  }

  cancel(id: number): Task {
    const t = this.mustGet(id);
    if (t.state === 'done' || t.state === 'cancelled') throw new BerthError('TASK_STATE', `task ${id} is already ${t.state}`, { details: { id, state: t.state } });
    this.d.tasks.set(id, { state: 'cancelled', reviewerSession: null }, this.now());
    if (t.claim) {
      this.lost.set(t.claim.session, { id, why: 'it was cancelled' });
      this.d.hostFile?.(t.claim.session, TASK_HOST_FILE, null);
    }
    const task = this.view(id);
    this.d.bus.publish('task.updated', { task });
    return task;
  }

  remove(id: number): { removed: number } {
    const t = this.mustGet(id);
    if (t.state === 'claimed' || t.state === 'review') {
      throw new BerthError('TASK_STATE', `task ${id} is ${t.state} by a session; cancel it first (\`berth task cancel ${id}\`)`, { details: { id, state: t.state } });
    }
    this.d.tasks.remove(id);
    this.d.bus.publish('task.removed', { id, project: t.project });
    return { removed: id };
  }

  import(p: ParamsOf<'tasks.import'>): TaskImportResult {
    return this.importEntries(p.project, parseTaskFile(p.format, p.text));
  }

  /**
   * Adds or updates the project's tasks by key, all or nothing: an entry that is invalid (a size,
   * a dependency on a key that is neither in the file nor in the project, a cycle) changes nothing.
   * Tasks already claimed keep their holder; their title and body still change.
   */
  importEntries(project: string, entries: readonly TaskFileEntry[]): TaskImportResult {
    if (!this.d.projects.get(project)) throw new BerthError('PROJECT_NOT_FOUND', `no project named ${project}`, { details: { name: project } });
    if (entries.length > MAX_IMPORT_ENTRIES) throw new BerthError('TASKS_FILE_INVALID', `${entries.length} entries; at most ${MAX_IMPORT_ENTRIES} at once`);
    const seen = new Set<string>();
    for (const [i, e] of entries.entries()) {
      if (seen.has(e.key)) throw new BerthError('TASKS_FILE_INVALID', `entry ${i + 1}: key ${JSON.stringify(e.key)} appears twice`, { details: { entry: i + 1, key: e.key } });
      seen.add(e.key);
      try {
        checkSizes(e);
      } catch (err) {
        throw new BerthError((err as BerthError).code, `entry ${i + 1} (${e.key}): ${(err as Error).message}`, { details: { entry: i + 1, key: e.key } });
      }
    }
    const now = this.now();
    const out = { added: 0, updated: 0, unchanged: 0, ids: [] as number[], fresh: new Set<number>(), changed: new Set<number>() };
    this.d.tasks.transaction(() => {
      const ids = new Map<string, number>();
      for (const e of entries) {
        const had = this.d.tasks.byKey(project, e.key);
        if (had) {
          ids.set(e.key, had.id);
          const same =
            had.title === e.title && had.body === (e.body ?? '') && had.priority === (e.priority ?? 0) && JSON.stringify(had.labels) === JSON.stringify(e.labels ?? []) && had.maxAttempts === (e.maxAttempts ?? DEFAULT_TASK_MAX_ATTEMPTS);
          if (!same) {
            this.d.tasks.update(had.id, { title: e.title, body: e.body ?? '', priority: e.priority ?? 0, labels: e.labels ?? [], maxAttempts: e.maxAttempts ?? DEFAULT_TASK_MAX_ATTEMPTS }, now);
            out.updated++;
            out.changed.add(had.id);
          } else out.unchanged++;
        } else {
          const id = this.d.tasks.insert({ project, key: e.key, title: e.title, body: e.body ?? '', priority: e.priority ?? 0, labels: e.labels ?? [], dependsOn: [], maxAttempts: e.maxAttempts ?? DEFAULT_TASK_MAX_ATTEMPTS }, now);
          ids.set(e.key, id);
          out.added++;
          out.fresh.add(id);
        }
      }
      for (const [i, e] of entries.entries()) {
        const id = ids.get(e.key)!;
        const deps: number[] = [];
        for (const k of e.dependsOn ?? []) {
          const dep = ids.get(k) ?? this.d.tasks.byKey(project, k)?.id;
          if (dep === undefined) throw new BerthError('TASKS_FILE_INVALID', `entry ${i + 1} (${e.key}): dependsOn names ${JSON.stringify(k)}, which is no task's key`, { details: { entry: i + 1, key: e.key } });
          deps.push(dep);
        }
        const before = this.d.tasks.get(id)!.dependsOn;
        if (JSON.stringify(before) !== JSON.stringify([...new Set(deps)].sort((a, b) => a - b))) {
          this.d.tasks.setDeps(id, []);
          for (const dep of deps) {
            if (dep === id || this.d.tasks.reaches(dep, id)) {
              throw new BerthError('TASKS_FILE_INVALID', `entry ${i + 1} (${e.key}): depending on ${JSON.stringify(e.dependsOn)} makes a cycle`, { details: { entry: i + 1, key: e.key } });
            }
          }
          this.d.tasks.setDeps(id, deps);
          if (!out.fresh.has(id) && !out.changed.has(id)) {
            // Counted unchanged by its fields; its dependencies changed.
            out.unchanged--;
            out.updated++;
            out.changed.add(id);
          }
        }
        out.ids.push(id);
      }
    });
    const tasks = out.ids.map((id) => this.view(id));
    for (const task of tasks) {
      if (out.fresh.has(task.id)) this.d.bus.publish('task.added', { task });
      else if (out.changed.has(task.id)) this.d.bus.publish('task.updated', { task });
    }
    return { added: out.added, updated: out.updated, unchanged: out.unchanged, tasks };
  }

  // ---- agents (JSON-RPC on their own bridge) ----

  /** The task the session holds, the one it reviews, or else (not for a pool's sessions) the next claimable one. */
  claim(s: SessionRecord, leaseSec?: number): Answer<'tasks.claim'> {
    const held = this.d.tasks.heldBy(s.id);
    if (held) {
      this.d.tasks.extend(s.id, this.leaseUntil(s.id, leaseSec), this.now());
      return { task: this.view(held.id) };
    }
    const reviewed = this.d.tasks.reviewedBy(s.id);
    if (reviewed) return { task: publicTask(reviewed) };
    if (this.inPool(s.id)) return { task: null };
    // One statement picks and claims: nothing can come between them.
    const claimed = this.d.tasks.claimNext(s.project, s, this.leaseUntil(s.id, leaseSec), this.now());
    if (claimed === undefined) return { task: null };
    this.lost.delete(s.id);
    // No /host/task.json: the answer hands the task over, and asking again returns it. A file
    // written per claim and removed per completion is the costliest part of a claim (the host's
    // file system allocates and frees a block for each).
    const task = publicTask(claimed);
    this.d.bus.publish('task.claimed', { task, session: { id: s.id, name: s.name } });
    return { task };
  }

  /** Claims task `id` for a session a pool starts for it (inside the transaction that makes the session). */
  claimFor(id: number, s: { id: string; name: string }, pool: string): boolean {
    return this.d.tasks.claim(id, s, this.leaseUntil(s.id), this.now(), pool);
  }

  /** After a pool claimed task `id` for the session it starts for it: the session's /host/task.json and the event. */
  claimed(id: number, s: { id: string; name: string }): Task {
    const task = this.view(id);
    this.d.hostFile?.(s.id, TASK_HOST_FILE, `${JSON.stringify({ role: 'worker', task }, null, 2)}\n`);
    this.d.bus.publish('task.claimed', { task, session: { id: s.id, name: s.name } });
    return task;
  }

  /** After a pool gave task `id` to reviewer session `s`: its /host/task.json. */
  reviewing(id: number, s: { id: string; name: string }): void {
    const task = this.view(id);
    this.d.hostFile?.(s.id, TASK_HOST_FILE, `${JSON.stringify({ role: 'reviewer', task }, null, 2)}\n`);
  }

  /** The task `s` holds, or TASK_LEASE_LOST / TASK_NOT_HELD saying why there is none. */
  private holding(s: SessionRecord): TaskRecord {
    const held = this.d.tasks.heldBy(s.id);
    if (held) return held;
    const lost = this.lost.get(s.id);
    if (lost) {
      const state = this.d.tasks.get(lost.id)?.state ?? null;
      throw new BerthError('TASK_LEASE_LOST', `this session no longer holds task ${lost.id} (${lost.why})`, { details: { id: lost.id, state } });
    }
    throw new BerthError('TASK_NOT_HELD', 'this session holds no task', { details: { session: s.name } });
  }

  /**
   * The task each session held before its claim was taken from it (the lease ran out, the task was
   * cancelled, berth stopped it), and why, if berthd saw that happen: its next call is told so
   * (TASK_LEASE_LOST) rather than that it never held one. Not what it gave up itself (fail,
   * release, complete), nor once it claims again.
   */
  private readonly lost = new Map<string, { id: number; why: string }>();

  heartbeat(s: SessionRecord, leaseSec?: number): Answer<'tasks.heartbeat'> {
    const t = this.holding(s);
    this.d.tasks.extend(s.id, this.leaseUntil(s.id, leaseSec), this.now());
    this.touched.set(s.id, this.d.clock.now().getTime());
    return { task: this.view(t.id) };
  }

  /** Bridge traffic and hook activity extend the lease, at most one write per tenth of the lease. */
  touch(sessionId: string): void {
    const now = this.d.clock.now().getTime();
    const sec = this.leases.get(sessionId) ?? DEFAULT_TASK_LEASE_SEC;
    if (now - (this.touched.get(sessionId) ?? 0) < (sec * 1000) / 10) return;
    this.touched.set(sessionId, now);
    this.d.tasks.extend(sessionId, this.leaseUntil(sessionId), new Date(now).toISOString());
  }

  complete(s: SessionRecord, summary: string): Answer<'tasks.complete'> {
    const text = agentText('summary', summary);
    const t = this.holding(s);
    const pool = t.pool ? this.d.pools.get(t.pool) : undefined;
    // Review is the pool's step for its own workers' branches; a task finished by any other session is done.
    const next = pool?.reviewer && this.d.pools.sessionOf(s.id)?.pool === pool.id ? 'review' : 'done';
    const result = { branch: s.branch, commit: null, summary: text, merged: null };
    const done = this.d.tasks.finishClaim(t.id, s.id, next, this.now(), { result });
    this.d.hostFile?.(s.id, TASK_HOST_FILE, null);
    const task = publicTask(done ?? this.mustGet(t.id));
    this.d.bus.publish('task.completed', { task, session: { id: s.id, name: s.name } });
    return { task };
  }

  fail(s: SessionRecord, reason: string): Answer<'tasks.fail'> {
    const text = agentText('reason', reason);
    const t = this.holding(s);
    return { task: this.endAttempt(t, 'failed', text || 'the agent gave up', { byHolder: true }) };
  }

  release(s: SessionRecord, reason?: string): Answer<'tasks.release'> {
    const text = agentText('reason', reason ?? '');
    const t = this.holding(s);
    return { task: this.endAttempt(t, 'released', text || 'released by the agent', { byHolder: true }) };
  }

  review(s: SessionRecord, decision: 'approve' | 'changes', notes?: string): Answer<'tasks.review'> {
    const text = agentText('notes', notes ?? '');
    const t = this.d.tasks.reviewedBy(s.id);
    if (!t || t.state !== 'review') throw new BerthError('TASK_NOT_REVIEWING', 'this session reviews no task', { details: { session: s.name } });
    const now = this.now();
    if (decision === 'approve') {
      this.d.tasks.set(t.id, { state: 'done', reviewerSession: null }, now);
    } else {
      this.d.tasks.set(t.id, { state: t.attempts >= t.maxAttempts ? 'failed' : 'open', reviewerSession: null, note: { at: now, attempt: t.attempts, session: s.id, kind: 'changes', text: text || 'changes asked for' } }, now);
    }
    this.d.hostFile?.(s.id, TASK_HOST_FILE, null);
    const task = this.view(t.id);
    this.d.bus.publish('task.reviewed', { task, decision });
    if (task.state === 'failed') this.d.bus.publish('task.failed', { task });
    return { task };
  }

  // ---- supervision ----

  /**
   * Ends the current attempt at `t` (its holder, if any, loses it): back to open, or failed once it
   * had maxAttempts. `refund`: the attempt does not count (berth stopped it, not the agent).
   * `byHolder`: the holder ended it itself (fail, release), so it has not lost anything.
   */
  endAttempt(t: TaskRecord, kind: TaskNote['kind'], text: string, opts: { refund?: boolean; byHolder?: boolean } = {}): Task {
    const holder = t.claim?.session ?? null;
    const now = this.now();
    const note: TaskNote = { at: now, attempt: t.attempts, session: holder, kind, text };
    const attempts = opts.refund ? t.attempts - 1 : t.attempts;
    const state = attempts >= t.maxAttempts ? 'failed' : 'open';
    this.d.tasks.transaction(() => {
      if (holder) this.d.tasks.finishClaim(t.id, holder, state, now, { note });
      else this.d.tasks.set(t.id, { state, note }, now);
      if (opts.refund) this.d.tasks.refundAttempt(t.id);
    });
    if (holder) {
      if (opts.byHolder) this.lost.delete(holder);
      else this.lost.set(holder, { id: t.id, why: kind === 'expired' ? 'its lease ran out' : `${kind}: ${text}` });
      this.d.hostFile?.(holder, TASK_HOST_FILE, null);
    }
    const task = this.view(t.id);
    this.d.bus.publish('task.released', { task, session: holder ? { id: holder, name: t.claim?.sessionName ?? '' } : null, reason: kind, text });
    if (state === 'failed') this.d.bus.publish('task.failed', { task });
    this.d.log.info({ task: t.id, session: holder, kind, state }, `Task ${t.id} ${state === 'failed' ? 'failed' : 'reopened'}: ${kind}`);
    return task;
  }

  /** Ends every lease that ran out, and every claim whose session is gone. */
  sweep(): void {
    const now = this.now();
    for (const t of this.d.tasks.expired(now)) this.endAttempt(t, 'expired', `no heartbeat from ${t.claim?.sessionName ?? 'its session'} since the lease ran out at ${t.claim?.leaseUntil}`);
    for (const t of this.d.tasks.claimed()) {
      if (t.claim && !this.d.sessionAlive(t.claim.session)) this.endAttempt(t, 'exited', `session ${t.claim.sessionName} is gone`);
    }
  }

  /**
   * After a berthd restart: agents could not heartbeat while it was down, so the leases of claims
   * whose sessions still exist start again from now (an agent is not punished for berthd's absence).
   */
  renewAfterRestart(): void {
    for (const t of this.d.tasks.claimed()) {
      if (!t.claim || !this.d.sessionAlive(t.claim.session)) continue;
      // The lease the agent asked for, kept in the row: it holds after the restart as before.
      if (t.leaseSec !== null) this.leases.set(t.claim.session, t.leaseSec);
      this.d.tasks.extend(t.claim.session, this.leaseUntil(t.claim.session), this.now());
    }
  }

  async start(signal: AbortSignal): Promise<void> {
    this.renewAfterRestart();
    while (!signal.aborted) {
      try {
        this.sweep();
      } catch (err) {
        this.d.log.error({ err }, 'Failed sweeping task leases');
      }
      await this.d.clock.sleep(this.d.checkMs ?? 5000, signal);
    }
  }

  /**
   * Whether the session is one a pool started (it works on the task it was given, claims no other).
   * Decided once per session: a pool's session row and its pool_sessions row are written in the
   * same transaction, before its bridge exists, so the answer never changes while it can ask.
   */
  private inPool(sessionId: string): boolean {
    let member = this.poolMember.get(sessionId);
    if (member === undefined) {
      member = this.d.pools.sessionOf(sessionId) !== undefined;
      this.poolMember.set(sessionId, member);
    }
    return member;
  }

  private readonly poolMember = new Map<string, boolean>();

  /** A session is gone: forget what was kept about it. */
  forget(sessionId: string): void {
    this.poolMember.delete(sessionId);
    this.touched.delete(sessionId);
    this.leases.delete(sessionId);
    this.lost.delete(sessionId);
  }
}
