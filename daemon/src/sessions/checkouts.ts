import { watch as fsWatch, type FSWatcher } from 'node:fs';
import { lstat, rmdir } from 'node:fs/promises';
import { join } from 'node:path';
import { BerthError, type MergeResult, type Project, type RemoveResult, type SessionDiff, type SessionMerge, type SessionStatus } from '@berth/client-sdk/protocol';
import type { CheckoutManager, CheckoutRef } from '../checkouts/manager.js';
import { readRef } from '../checkouts/shadow.js';
import { ImportQueue } from './import-queue.js';
import type { EventBus } from '../events/bus.js';
import type { Logger } from '../log.js';
import type { ProjectsRepo } from '../store/projects.js';
import type { SessionRecord, SessionsRepo } from '../store/sessions.js';

/** Paths a merge's `leftOut` names at most. */
const MAX_LEFT_OUT = 1000;

export interface SessionCheckoutsOptions {
  /** How often every checkout's branch tip is compared with what the project has (the backstop). */
  pollMs?: number;
  /** Follow refs with inotify too (two watches per checkout, whatever the agent writes). */
  watch?: boolean;
}

/**
 * The sessions' side of checkouts: which work tree a session has, keeping the project's
 * `berth/<name>` branch in step with commits made inside the container, and the scheduled repairs.
 *
 * Imports are level-triggered: a session is marked for import when a watch fires or the periodic
 * backstop sees its branch tip differ from the last one imported; per project, everything marked
 * while one import runs goes in the next, as one batch (three git processes however many sessions).
 * The watches are two plain directory watches per checkout (`.git` and `.git/refs/heads/berth`), so
 * nothing an agent writes can grow them; what they miss (events dropped, a link swapped in, berthd
 * restarted) the backstop catches within `pollMs`.
 */
export class SessionCheckouts {
  private interrupted: string[] | null = null;
  private readonly watchers = new Map<string, FSWatcher[]>();
  /** The imports (see ImportQueue); watches and the backstop only mark sessions for it. */
  readonly queue: ImportQueue;
  /** Last stat signature of the checkout's ref files, to skip reading unchanged ones on each poll. */
  private readonly seen = new Map<string, string>();
  private readonly soon = new Map<string, NodeJS.Timeout>();
  private readonly removals = new Map<string, Pick<RemoveResult, 'kept' | 'notes'>>();
  private poller: NodeJS.Timeout | null = null;
  private readonly pollMs: number;
  private readonly useWatch: boolean;

  constructor(
    readonly manager: CheckoutManager,
    private readonly sessions: SessionsRepo,
    private readonly projects: ProjectsRepo,
    private readonly log: Logger,
    bus?: EventBus,
    opts: SessionCheckoutsOptions = {},
  ) {
    this.pollMs = opts.pollMs ?? 2000;
    this.useWatch = opts.watch ?? true;
    this.queue = new ImportQueue(manager, sessions, projects, (s) => this.ref(s), log, bus);
  }

  project(s: SessionRecord): Project {
    const p = this.projects.get(s.project);
    if (!p) throw new BerthError('PROJECT_NOT_FOUND', `project ${s.project} of session ${s.name} is gone`);
    return p;
  }

  /** The work tree a session's git work lives in. */
  async ref(s: SessionRecord): Promise<CheckoutRef & { name: string; merged?: SessionMerge | null }> {
    if (s.checkoutDir) return { key: s.id, workTree: s.checkoutDir, branch: s.branch, base: s.base, baseSha: s.baseSha, name: s.name, merged: s.merged };
    const p = this.project(s);
    const base = p.branch ?? (await this.manager.currentBranch(p.path));
    return { key: s.id, workTree: p.path, branch: null, base, baseSha: null, name: s.name };
  }

  async status(s: SessionRecord): Promise<SessionStatus> {
    const p = this.project(s);
    if (!s.checkoutDir || !s.branch) return { ...(await this.manager.inspect.status(await this.ref(s), p.path)), importedTip: null, pendingImport: false };
    await this.queue.importNow(s).catch((err: unknown) => this.log.debug({ sessionId: s.id, err: (err as Error).message }, 'Import before status failed'));
    const st = await this.manager.inspect.status(await this.ref(s), p.path);
    const tip = await readRef(s.checkoutDir, `refs/heads/${s.branch}`);
    const importedTip = this.queue.imported.get(s.id) ?? null;
    return { ...st, importedTip, pendingImport: tip !== null && tip !== importedTip };
  }

  async diff(s: SessionRecord, stat: boolean): Promise<SessionDiff> {
    if (!s.checkoutDir) throw new BerthError('NO_CHECKOUT', `session ${s.name} works in the main checkout and has no branch of its own`);
    return this.manager.inspect.diff(await this.ref(s), this.project(s).path, stat);
  }

  async merge(s: SessionRecord, strategy: 'ff' | 'merge' | 'squash', message?: string): Promise<MergeResult> {
    if (!s.checkoutDir) throw new BerthError('NO_CHECKOUT', `session ${s.name} works in the main checkout and has no branch of its own`);
    await this.queue.importNow(s);
    const r = await this.manager.imports.merge(await this.ref(s), this.project(s).path, strategy, message);
    this.sessions.setMerged(s.id, { strategy: r.strategy, base: r.base, commit: r.commit, branchTip: r.branchTip, at: new Date().toISOString() });
    // What `berth diff` shows but a merge of commits cannot take: said, not silently dropped.
    // Capped: an agent may leave a million untracked files, and this answer carries their names.
    const leftOut = (await this.dirty(s).catch(() => [])).slice(0, MAX_LEFT_OUT);
    return { ...r, leftOut };
  }

  async dirty(s: SessionRecord): Promise<string[]> {
    if (!s.checkoutDir) return [];
    return (await this.manager.inspect.dirty(await this.ref(s), this.project(s).path)).map((d) => d.path);
  }

  /**
   * Makes the checkout of a session whose row says `creating`, records it `ready` (a new generation:
   * only now may the reconciler make the container) and returns the row.
   */
  async makeCheckout(s: SessionRecord, project: Project, meta: { agent: string; owner: { uid: number; gid: number }; continueBranch?: boolean }): Promise<SessionRecord> {
    const co = await this.manager.create(project, s.name, { ...meta, key: s.id, onMade: (identity) => this.sessions.setCheckoutIdentity(s.id, identity) });
    const rec = this.sessions.setCheckoutReady(s.id, { branch: co.branch, base: co.base, baseSha: co.baseSha }, new Date().toISOString());
    if (!rec) throw new BerthError('SESSION_NOT_FOUND', `session ${s.name} was removed while its checkout was made`, { details: { id: s.id } });
    this.queue.imported.set(s.id, co.head);
    return rec;
  }

  /**
   * Finishes checkouts that were being made when berthd stopped: the half-made directory (only if it
   * is the one berth recorded making) is removed and the checkout made again; when that cannot be
   * done the session fails with CHECKOUT_FAILED and waits for the user. Never starts it elsewhere.
   */
  /**
   * The checkouts a restart interrupted: those being made when berthd came up, taken before it
   * serves requests (a session started in the first moments is being made by its own start, not
   * interrupted; resuming it too made both fail).
   */
  captureInterrupted(): void {
    this.interrupted ??= this.sessions.checkoutsCreating().map((s) => s.id);
  }

  async resumeCreations(): Promise<void> {
    this.captureInterrupted();
    for (const id of this.interrupted ?? []) {
      const s = this.sessions.get(id);
      if (!s || s.checkoutState !== 'creating' || s.desired === 'removed' || !s.checkoutDir) continue;
      const project = this.projects.get(s.project);
      try {
        if (!project) throw new BerthError('PROJECT_NOT_FOUND', `project ${s.project} is gone`);
        if (s.checkoutIdentity) await this.manager.removal.removeDir(s.checkoutDir, s.checkoutIdentity);
        // Killed between making the directory and recording it: only an empty one can be that.
        else await rmdir(s.checkoutDir).catch(() => {});
        await this.manager.shadows.drop(s.id);
        const [uid, gid] = s.spec.user.split(':').map(Number);
        await this.makeCheckout(s, project, { agent: s.agent, owner: { uid: uid!, gid: gid! } });
        this.log.warn({ sessionId: s.id, dir: s.checkoutDir }, 'Finished making a checkout interrupted by a restart');
      } catch (err) {
        this.log.warn({ sessionId: s.id, err: (err as Error).message }, 'Could not finish an interrupted checkout; the session fails');
        this.sessions.failCheckout(s.id, `its checkout could not be made after a restart: ${(err as Error).message}`, new Date().toISOString());
      }
    }
  }

  /**
   * The reconciler's last step of a removal: the checkout goes (see CheckoutManager.remove), with the
   * options the user gave. Idempotent, so a removal interrupted anywhere is finished by the next pass.
   */
  async finishRemoval(s: SessionRecord): Promise<void> {
    this.unwatch(s.id);
    this.queue.imported.delete(s.id);
    if (!s.checkoutDir) return;
    let result: Pick<RemoveResult, 'kept' | 'notes'>;
    if (s.checkoutState === 'creating') {
      // Never finished: nothing in it is anyone's work; remove it only if it is the one berth made.
      if (s.checkoutIdentity) await this.manager.removal.removeDir(s.checkoutDir, s.checkoutIdentity);
      await this.manager.shadows.drop(s.id);
      result = { kept: {}, notes: [] };
    } else {
      const project = this.projects.get(s.project);
      if (!project) result = { kept: {}, notes: [`checkout ${s.checkoutDir} was kept: project ${s.project} is gone`] };
      else {
        const opts = s.removeOpts ?? { force: false, deleteBranch: false };
        const r = await this.manager.removal.remove(await this.ref(s), project.path, { ...opts, identity: s.checkoutIdentity });
        result = { kept: r.kept, notes: r.notes };
      }
    }
    this.removals.set(s.id, result);
    if (this.removals.size > 1000) this.removals.delete(this.removals.keys().next().value!);
  }

  /** What finishRemoval() kept and said, once, for the sessions.remove call that asked. */
  takeRemoval(id: string): Pick<RemoveResult, 'kept' | 'notes'> | undefined {
    const r = this.removals.get(id);
    this.removals.delete(id);
    return r;
  }

  /**
   * A watch fired: at most one mark per session per 100 ms, however many events an agent makes
   * (an agent creating 80,000 files in its .git costs berthd a timer, not 80,000 imports).
   */
  private markSoon(id: string): void {
    if (this.soon.has(id)) return;
    const t = setTimeout(() => {
      this.soon.delete(id);
      this.queue.mark(id);
    }, 100);
    t.unref();
    this.soon.set(id, t);
  }

  // ---- noticing commits -----------------------------------------------------------------------------

  /** Follows commits made in the session's checkout into the project within a moment. */
  watch(s: SessionRecord): void {
    if (!s.checkoutDir || !this.useWatch || this.watchers.has(s.id)) return;
    const list: FSWatcher[] = [];
    const leaf = s.branch?.split('/').pop() ?? '';
    // Only the names an import depends on: HEAD and packed-refs in .git, the branch's own file.
    const wanted: [string, (f: string) => boolean][] = [
      [join(s.checkoutDir, '.git'), (f) => f === 'HEAD' || f === 'packed-refs'],
      [join(s.checkoutDir, '.git', 'refs', 'heads', 'berth'), (f) => f === leaf || f === `${leaf}.lock`],
    ];
    for (const [dir, relevant] of wanted) {
      try {
        const w = fsWatch(dir, { persistent: false }, (_e, f) => {
          if (f === null || relevant(String(f))) this.markSoon(s.id);
        });
        w.on('error', () => {
          w.close();
          // Re-armed by the backstop.
          this.watchers.delete(s.id);
        });
        list.push(w);
      } catch {
        // missing or not ours to watch: the backstop covers it
      }
    }
    this.watchers.set(s.id, list);
  }

  unwatch(id: string): void {
    clearTimeout(this.soon.get(id));
    this.soon.delete(id);
    for (const w of this.watchers.get(id) ?? []) w.close();
    this.watchers.delete(id);
    this.seen.delete(id);
  }

  /** The backstop: any checkout whose branch tip is not the one imported is imported now. */
  private async pollOnce(): Promise<void> {
    for (const s of this.sessions.withCheckouts()) {
      if (!s.checkoutDir || !s.branch) continue;
      if (!this.watchers.has(s.id)) this.watch(s);
      // Cheap first: the ref file's and packed-refs' stat; read only what changed.
      const sig = await signature(s.checkoutDir, s.branch);
      if (sig === this.seen.get(s.id)) continue;
      const tip = await readRef(s.checkoutDir, `refs/heads/${s.branch}`);
      if (!tip || tip === this.queue.imported.get(s.id)) {
        // Nothing to import (or nothing readable): read again only when the files change.
        this.seen.set(s.id, sig);
        continue;
      }
      try {
        await this.queue.importNow(s);
        this.seen.set(s.id, sig);
      } catch {
        // logged by the batch; tried again next poll
      }
    }
  }

  /**
   * Watches every checkout (after a restart too) and imports what is pending. The repairs
   * (repairAll) are the `checkouts` maintenance job, scheduled with the others (maintenance/jobs.ts).
   */
  start(): void {
    void this.resumeCreations().catch((err: unknown) => this.log.warn({ err: (err as Error).message }, 'Resuming checkouts failed'));
    for (const s of this.sessions.withCheckouts()) {
      this.watch(s);
      this.queue.mark(s.id);
    }
    const tick = () => {
      this.poller = setTimeout(() => {
        void this.pollOnce()
          .catch((err: unknown) => this.log.warn({ err: (err as Error).message }, 'Import backstop failed'))
          .finally(() => {
            if (this.poller) tick();
          });
      }, this.pollMs);
      this.poller.unref();
    };
    tick();
  }

  async repairAll(): Promise<string[]> {
    const all = this.sessions.withCheckouts();
    const owned = new Set(all.map((s) => s.checkoutDir).filter((d): d is string => d !== null));
    const busy = new Set(this.sessions.live().map((s) => s.checkoutDir ?? this.projects.get(s.project)?.path ?? ''));
    const done: string[] = [];
    for (const p of this.projects.list()) {
      try {
        done.push(...(await this.manager.removal.repair(p, owned, busy)));
      } catch (err) {
        this.log.warn({ project: p.name, err: (err as Error).message }, 'Repair failed');
      }
    }
    return done;
  }

  stop(): void {
    if (this.poller) clearTimeout(this.poller);
    this.poller = null;
    for (const id of [...this.watchers.keys()]) this.unwatch(id);
    for (const t of this.soon.values()) clearTimeout(t);
    this.soon.clear();
  }
}

async function signature(dir: string, branch: string): Promise<string> {
  const parts: string[] = [];
  for (const f of [join(dir, '.git', 'refs', 'heads', branch), join(dir, '.git', 'packed-refs'), join(dir, '.git', 'refs', 'heads', 'berth')]) {
    try {
      const st = await lstat(f);
      parts.push(`${st.ino}:${st.size}:${st.mtimeMs}`);
    } catch {
      parts.push('-');
    }
  }
  return parts.join('|');
}
