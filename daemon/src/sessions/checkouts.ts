import { join } from 'node:path';
import { watch, type FSWatcher } from 'chokidar';
import { schedule, type ScheduledTask } from 'node-cron';
import { BerthError, type MergeResult, type Project, type RemoveResult, type SessionDiff, type SessionStatus } from '@berth/client-sdk/protocol';
import type { CheckoutManager, CheckoutRef } from '../checkouts/manager.js';
import type { Logger } from '../log.js';
import type { ProjectsRepo } from '../store/projects.js';
import type { SessionRecord, SessionsRepo } from '../store/sessions.js';

/**
 * The sessions' side of checkouts: which work tree a session has, keeping the project's
 * `berth/<name>` branch in step with commits made inside the container (a watch on the checkout's
 * refs, plus a sweep), and the scheduled repairs.
 */
export class SessionCheckouts {
  private readonly watchers = new Map<string, FSWatcher>();
  private readonly pending = new Map<string, NodeJS.Timeout>();
  private task: ScheduledTask | null = null;

  constructor(
    readonly manager: CheckoutManager,
    private readonly sessions: SessionsRepo,
    private readonly projects: ProjectsRepo,
    private readonly log: Logger,
  ) {}

  project(s: SessionRecord): Project {
    const p = this.projects.get(s.project);
    if (!p) throw new BerthError('PROJECT_NOT_FOUND', `project ${s.project} of session ${s.name} is gone`);
    return p;
  }

  /** The work tree a session's git work lives in. */
  async ref(s: SessionRecord): Promise<CheckoutRef & { name: string }> {
    if (s.checkoutDir) return { key: s.id, workTree: s.checkoutDir, branch: s.branch, base: s.base, baseSha: s.baseSha, name: s.name };
    const p = this.project(s);
    const base = p.branch ?? (await this.manager.currentBranch(p.path));
    return { key: s.id, workTree: p.path, branch: null, base, baseSha: null, name: s.name };
  }

  async status(s: SessionRecord): Promise<SessionStatus> {
    const p = this.project(s);
    if (s.checkoutDir) await this.manager.sync(await this.ref(s), p.path).catch(() => {});
    return this.manager.status(await this.ref(s), p.path);
  }

  async diff(s: SessionRecord, stat: boolean): Promise<SessionDiff> {
    if (!s.checkoutDir) throw new BerthError('NO_CHECKOUT', `session ${s.name} works in the main checkout and has no branch of its own`);
    return this.manager.diff(await this.ref(s), this.project(s).path, stat);
  }

  async merge(s: SessionRecord, strategy: 'ff' | 'merge' | 'squash', message?: string): Promise<MergeResult> {
    if (!s.checkoutDir) throw new BerthError('NO_CHECKOUT', `session ${s.name} works in the main checkout and has no branch of its own`);
    return this.manager.merge(await this.ref(s), this.project(s).path, strategy, message);
  }

  async dirty(s: SessionRecord): Promise<string[]> {
    if (!s.checkoutDir) return [];
    return (await this.manager.dirty(await this.ref(s), this.project(s).path)).map((d) => d.path);
  }

  async remove(s: SessionRecord, opts: { force: boolean; deleteBranch: boolean }): Promise<Pick<RemoveResult, 'kept' | 'notes'>> {
    this.unwatch(s.id);
    if (!s.checkoutDir) return { kept: {}, notes: [] };
    const r = await this.manager.remove(await this.ref(s), this.project(s).path, opts);
    if (!r.removed) return { kept: r.kept, notes: r.notes };
    return { kept: r.kept, notes: r.notes };
  }

  /** Follows commits made in the session's checkout into the project within a moment. */
  watch(s: SessionRecord): void {
    if (!s.checkoutDir || this.watchers.has(s.id)) return;
    const gitDir = join(s.checkoutDir, '.git');
    const w = watch(gitDir, {
      ignoreInitial: true,
      followSymlinks: false,
      depth: 6,
      ignored: (p: string) => p.includes(`${gitDir}/objects`) || p.includes(`${gitDir}/logs`),
    });
    w.on('all', (_e, path) => {
      if (path.includes('/refs/') || path.endsWith('packed-refs') || path.endsWith('HEAD')) this.syncSoon(s.id);
    });
    w.on('error', (err) => this.log.debug({ sessionId: s.id, err: (err as Error).message }, 'checkout watch error'));
    this.watchers.set(s.id, w);
  }

  unwatch(id: string): void {
    void this.watchers.get(id)?.close();
    this.watchers.delete(id);
    clearTimeout(this.pending.get(id));
    this.pending.delete(id);
  }

  private syncSoon(id: string): void {
    clearTimeout(this.pending.get(id));
    this.pending.set(
      id,
      setTimeout(() => {
        this.pending.delete(id);
        void this.syncOne(id);
      }, 200),
    );
  }

  async syncOne(id: string): Promise<void> {
    const s = this.sessions.get(id);
    if (!s?.checkoutDir) return;
    try {
      await this.manager.sync(await this.ref(s), this.project(s).path);
    } catch (err) {
      this.log.warn({ sessionId: id, err: (err as Error).message }, 'Could not import session commits');
    }
  }

  /** Watches every checkout (after a restart too), then repairs now and every 10 minutes. */
  start(): void {
    for (const s of this.sessions.all()) {
      if (s.checkoutDir && s.desired !== 'removed') {
        this.watch(s);
        void this.syncOne(s.id);
      }
    }
    void this.repairAll();
    this.task = schedule('*/10 * * * *', () => void this.repairAll(), { noOverlap: true });
  }

  async repairAll(): Promise<string[]> {
    const all = this.sessions.all();
    const owned = new Set(all.map((s) => s.checkoutDir).filter((d): d is string => d !== null));
    const busy = new Set(all.filter((s) => s.state === 'running' || s.state === 'creating').map((s) => s.checkoutDir ?? this.projects.get(s.project)?.path ?? ''));
    const done: string[] = [];
    for (const p of this.projects.list()) {
      try {
        done.push(...(await this.manager.repair(p, owned, busy)));
      } catch (err) {
        this.log.warn({ project: p.name, err: (err as Error).message }, 'Repair failed');
      }
    }
    return done;
  }

  stop(): void {
    void this.task?.stop();
    for (const id of [...this.watchers.keys()]) this.unwatch(id);
  }
}
