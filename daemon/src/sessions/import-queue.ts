import type { CheckoutManager, CheckoutRef, ImportItem } from '../checkouts/manager.js';
import { readRef } from '../checkouts/shadow.js';
import type { EventBus } from '../events/bus.js';
import type { Logger } from '../log.js';
import type { ProjectsRepo } from '../store/projects.js';
import type { SessionRecord, SessionsRepo } from '../store/sessions.js';

interface Waiter {
  resolve: () => void;
  reject: (err: unknown) => void;
}

/**
 * Imports of sessions' commits into their projects, level-triggered and batched: a session marked
 * for import goes into its project's next import; per project one import runs at a time, and
 * everything marked meanwhile goes into the next, as one batch (three git processes however many
 * sessions). A failing batch is retried one session at a time.
 */
export class ImportQueue {
  /** Last tip imported (or found in the project) per session id. */
  readonly imported = new Map<string, string>();
  private readonly pending = new Map<string, Map<string, Waiter[]>>();
  private readonly draining = new Set<string>();

  constructor(
    private readonly manager: CheckoutManager,
    private readonly sessions: SessionsRepo,
    private readonly projects: ProjectsRepo,
    private readonly refOf: (s: SessionRecord) => Promise<CheckoutRef & { name: string }>,
    private readonly log: Logger,
    private readonly bus?: EventBus,
  ) {}

  /** Imports this session's branch now (joining the batch under way), resolving once it is in. */
  importNow(s: SessionRecord): Promise<void> {
    if (!s.checkoutDir || !s.branch) return Promise.resolve();
    const p = this.projects.get(s.project);
    if (!p) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const q = this.pending.get(p.path) ?? new Map<string, Waiter[]>();
      this.pending.set(p.path, q);
      q.set(s.id, [...(q.get(s.id) ?? []), { resolve, reject }]);
      void this.drain(p.path);
    });
  }

  /** Marks a session for the next import of its project (no one waits for it). */
  mark(id: string): void {
    const s = this.sessions.get(id);
    const p = s?.checkoutDir && s.branch ? this.projects.get(s.project) : undefined;
    if (!s || !p) return;
    const q = this.pending.get(p.path) ?? new Map<string, Waiter[]>();
    this.pending.set(p.path, q);
    if (!q.has(s.id)) q.set(s.id, []);
    void this.drain(p.path);
  }

  private async drain(repo: string): Promise<void> {
    if (this.draining.has(repo)) return;
    this.draining.add(repo);
    try {
      for (;;) {
        const q = this.pending.get(repo);
        if (!q?.size) break;
        this.pending.delete(repo);
        await this.manager.withRepo(repo, () => this.batch(repo, q)).catch(() => {});
      }
    } finally {
      this.draining.delete(repo);
    }
  }

  /** One import for every session in `q`; a failing batch is retried one session at a time. */
  private async batch(repo: string, q: Map<string, Waiter[]>): Promise<void> {
    const items: (ImportItem & { s: SessionRecord })[] = [];
    const settle = (id: string, err?: unknown) => {
      for (const w of q.get(id) ?? []) (err ? w.reject(err) : w.resolve());
    };
    let inProject: Map<string, string>;
    try {
      inProject = await this.manager.imports.importedTips(repo);
    } catch (err) {
      for (const id of q.keys()) settle(id, err);
      return;
    }
    for (const id of q.keys()) {
      const s = this.sessions.get(id);
      if (!s?.checkoutDir || !s.branch) {
        settle(id);
        continue;
      }
      const tip = await readRef(s.checkoutDir, `refs/heads/${s.branch}`);
      const have = inProject.get(s.branch);
      if (have) this.imported.set(s.id, have);
      if (!tip || tip === have) {
        settle(id);
        continue;
      }
      items.push({ ref: await this.refOf(s), tip, s });
    }
    if (!items.length) return;
    const one = async (group: typeof items) => {
      for (const i of group) await this.manager.shadows.refreshMirror(i.ref, repo);
      await this.manager.imports.importMany(repo, group, []);
      for (const i of group) {
        this.imported.set(i.s.id, i.tip);
        this.bus?.publish('session.imported', { id: i.s.id, name: i.s.name, branch: i.s.branch!, tip: i.tip });
        settle(i.s.id);
      }
    };
    const started = Date.now();
    try {
      await one(items);
    } catch (err) {
      if (items.length === 1) {
        this.log.warn({ sessionId: items[0]!.s.id, err: (err as Error).message }, 'Could not import session commits');
        settle(items[0]!.s.id, err);
        return;
      }
      for (const i of items) {
        await one([i]).catch((e: unknown) => {
          this.log.warn({ sessionId: i.s.id, err: (e as Error).message }, 'Could not import session commits');
          settle(i.s.id, e);
        });
      }
    }
    this.log.debug({ repo, sessions: items.length, ms: Date.now() - started }, 'Imported session commits');
  }
}
