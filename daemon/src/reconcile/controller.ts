import { randomBytes } from 'node:crypto';
import { BerthError, isTerminal, type SessionState } from '@berth/client-sdk/protocol';
import type { EventBus } from '../events/bus.js';
import type { Clock } from '../shared/clock.js';
import type { Logger } from '../log.js';
import { LABELS, agentVolumeName, networkLabels } from '../runtime/labels.js';
import type { ContainerObservation, ContainerRuntime, ContainerSummary } from '../runtime/port.js';
import type { Secrets } from '../sessions/secrets.js';
import { toContainerSpec } from '../sessions/spec.js';
import type { ObservedPatch, SessionRecord, SessionsRepo } from '../store/sessions.js';
import { assertOwnObjects, assertRealPath } from '../checkouts/safe-fs.js';
import { KeyedMutex } from '../shared/mutex.js';
import { plan, resyncPlan } from './plan.js';
import { OrphanSweeper } from './orphans.js';
import { WorkQueue } from './queue.js';


export interface ReconcilerOptions {
  workers?: number;
  /** Every this often every session is reconciled and orphans are swept. */
  resyncMs?: number;
  /** An orphan container (berth labels, no session) is removed once it has been seen this long. */
  orphanGraceMs?: number;
  /** Per-run deadline; a run past it counts as a failure and is retried with backoff. */
  runTimeoutMs?: number;
}

export interface ReconcilerDeps {
  sessions: SessionsRepo;
  runtime: ContainerRuntime;
  bus: EventBus;
  log: Logger;
  clock: Clock;
  secrets: Secrets;
  instanceId: string;
  /** Called when the engine looks unreachable, so the monitor re-checks now. */
  onEngineError?: () => void;
  /**
   * The last step of a removal, once the container is gone and before the row is: the checkout's
   * removal (idempotent; after a crash the next pass runs it again). A throw means retry.
   */
  beforeDelete?: (s: SessionRecord) => Promise<void>;
  /**
   * The session's Claude bridge, made ready before its container is created or started (after a
   * berthd restart the socket is made again). Returns the host directory the container mounts.
   */
  bridge?: { ensure(sessionId: string): Promise<string> };
  /**
   * Of this resync's orphan containers, those the sweep must leave running (after a restore: the
   * containers of sessions the restored database does not know). A throw skips this sweep.
   */
  keepOrphans?: (candidates: ContainerSummary[]) => Set<string>;
  /** What the engine's own log of each new container keeps (config `logEngineBytes`). */
  engineLogBytes?: number;
}

class GenerationMoved extends Error {}

/**
 * The session controller. RPC calls only write desired state and enqueue the session; this loop makes
 * the engine match, one session (key) at a time per worker, level-triggered: each run re-reads the
 * session and the container, asks plan() for the next step, does it, and repeats until plan() has
 * nothing to do. A thrown error means retry with backoff; success forgets the backoff; a terminal
 * error is recorded on the session and not retried. Exceptions stop here, never in the daemon.
 */
export class Reconciler {
  private readonly queue: WorkQueue;
  private readonly failures = new Map<string, number>();
  private readonly stopTimeouts = new Map<string, number>();
  private readonly orphans: OrphanSweeper;
  /**
   * Network ids by name, known to exist: saves engine round trips per start. Filled only under
   * networkLock, so concurrent first starts on a project make one network, not one each.
   * Forgotten when a create finds the network gone.
   */
  private readonly networks = new Map<string, string>();
  private readonly networkLock = new KeyedMutex();
  private opts: Required<ReconcilerOptions>;
  private runSeq = 0;

  constructor(
    private readonly d: ReconcilerDeps,
    opts: ReconcilerOptions = {},
  ) {
    this.opts = {
      workers: opts.workers ?? 8,
      resyncMs: opts.resyncMs ?? 30_000,
      orphanGraceMs: opts.orphanGraceMs ?? 60_000,
      runTimeoutMs: opts.runTimeoutMs ?? 120_000,
    };
    this.queue = new WorkQueue(d.clock);
    this.orphans = new OrphanSweeper(d.runtime, d.clock, d.log, this.opts.orphanGraceMs);
  }

  /** The resync interval, changed live (config `resyncSec`): taken at the next sleep. */
  setResyncMs(ms: number): void {
    this.opts.resyncMs = ms;
  }

  get ownLabels(): Record<string, string> {
    return { [LABELS.managed]: 'true', [LABELS.instance]: this.d.instanceId };
  }

  enqueue(id: string): void {
    this.queue.add(id);
  }

  /**
   * Queues every session that can need work, from one container listing: the unsettled ones (see
   * UNSETTLED), those whose container the listing shows in another state than their row records
   * or not at all, and those with a container their row does not record. Containers of no session
   * are swept as orphans from the same listing. Settled history costs no engine call.
   * Returns how many sessions it queued.
   */
  async resync(): Promise<number> {
    const containers = await this.d.runtime.summaries(this.ownLabels);
    const { queue, orphans } = resyncPlan({
      unsettled: this.d.sessions.unsettledIds(),
      recorded: this.d.sessions.withContainers(),
      containers,
      exists: (ids) => this.d.sessions.existing(ids),
    });
    for (const id of queue) this.queue.add(id);
    let sweepable = orphans;
    try {
      const keep = this.d.keepOrphans?.(orphans);
      if (keep?.size) sweepable = orphans.filter((c) => !keep.has(c.id));
    } catch (err) {
      this.d.log.warn({ err: (err as Error).message }, 'Cannot tell which orphans to keep; not sweeping this time');
      sweepable = [];
    }
    await this.orphans.sweep(sweepable).catch((err: unknown) => this.d.log.warn({ err: (err as Error).message }, 'Orphan sweep failed'));
    return queue.size;
  }

  /** resync() whose failure (the engine away) is logged, not thrown: the next one tries again. */
  resyncSoon(): void {
    void this.resync().catch((err: unknown) => this.d.log.debug({ err: (err as Error).message }, 'Resync failed; the next one will try again'));
  }

  /** The grace period for the next stop of this session (sessions.stop {timeoutSec}). */
  setStopTimeout(id: string, sec: number): void {
    this.stopTimeouts.set(id, sec);
  }

  /** Runs workers and the periodic resync until `signal` aborts. */
  async start(signal: AbortSignal): Promise<void> {
    const workers = Array.from({ length: this.opts.workers }, () => this.worker());
    const resync = (async () => {
      while (!signal.aborted) {
        await this.d.clock.sleep(this.opts.resyncMs, signal);
        if (signal.aborted) break;
        await this.resync().catch((err: unknown) => this.d.log.debug({ err: (err as Error).message }, 'Resync failed; the next one will try again'));
      }
    })();
    await new Promise<void>((resolve) => {
      if (signal.aborted) return resolve();
      signal.addEventListener('abort', () => resolve(), { once: true });
    });
    this.queue.stop();
    await Promise.all([...workers, resync]);
  }

  private async worker(): Promise<void> {
    for (;;) {
      const key = await this.queue.get();
      if (key === null) return;
      const log = this.d.log.child({ sessionId: key, reconcileId: ++this.runSeq });
      try {
        const res = await this.withTimeout(this.reconcile(key, log));
        this.failures.delete(key);
        if (res.requeueAfterMs !== undefined) this.queue.addAfter(key, res.requeueAfterMs);
      } catch (err) {
        const n = (this.failures.get(key) ?? 0) + 1;
        this.failures.set(key, n);
        const delay = Math.min(30_000, 500 * 2 ** (n - 1));
        if (err instanceof BerthError && err.code === 'ENGINE_UNAVAILABLE') {
          this.d.onEngineError?.();
          log.debug({ retryInMs: delay }, 'Engine unavailable; will retry');
        } else {
          log.warn({ err: (err as Error).message, retryInMs: delay }, 'Failed reconcile');
        }
        this.queue.addAfter(key, delay);
      } finally {
        this.queue.done(key);
      }
    }
  }

  private withTimeout<T>(p: Promise<T>): Promise<T> {
    let t: NodeJS.Timeout;
    return Promise.race([
      p,
      new Promise<never>((_, reject) => {
        t = setTimeout(() => reject(new Error(`reconcile run exceeded ${this.opts.runTimeoutMs} ms`)), this.opts.runTimeoutMs);
      }),
    ]).finally(() => clearTimeout(t));
  }

  /** One level-triggered run for one session. Exposed for tests. */
  async reconcile(id: string, log = this.d.log): Promise<{ requeueAfterMs?: number }> {
    for (let i = 0; i < 10; i++) {
      const s = this.d.sessions.get(id);
      if (!s) return {};
      const c = await this.observe(s);
      const step = plan(s, c, this.d.clock.now().getTime());
      try {
        switch (step.kind) {
          case 'observe': {
            // A write may make the next step possible (clearing `recreate`, say): plan again.
            if (this.record(s, step.patch) !== s) continue;
            return step.requeueAfterMs === undefined ? {} : { requeueAfterMs: step.requeueAfterMs };
          }
          case 'create':
            await this.create(s, log);
            break;
          case 'start':
            if (step.restart) {
              this.record(s, { restartCount: s.restartCount + 1, nextRestartAt: null });
              log.info({ containerId: c!.id, restartCount: s.restartCount + 1 }, 'Restarting agent after exit');
            }
            this.assertCurrent(s);
            // Docker resolves bind sources at every start, not only at create: check them again.
            await this.terminal(s, async () => {
              await this.assertMountSources(s);
              await this.d.bridge?.ensure(s.id);
              await this.d.runtime.start(c!.id);
            });
            break;
          case 'stop': {
            this.record(s, { state: 'stopping' });
            const t = this.stopTimeouts.get(id) ?? 10;
            log.info({ containerId: c!.id, timeoutSec: t }, 'Stopping agent');
            await this.d.runtime.stop(c!.id, t);
            this.stopTimeouts.delete(id);
            break;
          }
          case 'remove': {
            this.assertCurrent(s);
            const volumes = s.desired === 'removed' ? [agentVolumeName(s.id)] : [];
            log.info({ containerId: c!.id, desired: s.desired }, 'Removing container');
            await this.d.runtime.remove(c!.id, { volumes });
            if (step.thenPatch) this.record(this.d.sessions.get(id)!, { ...step.thenPatch, containerId: null });
            break;
          }
          case 'delete': {
            await this.d.beforeDelete?.(s);
            // A record stays (removed_sessions) so its logs can be read until retention ends.
            this.d.sessions.remove(id, this.d.clock.now().toISOString());
            this.d.bus.publish('session.removed', { id, name: s.name });
            log.info('Removed session');
            return {};
          }
        }
      } catch (err) {
        if (err instanceof GenerationMoved) continue;
        throw err;
      }
    }
    return { requeueAfterMs: 1000 };
  }

  /** The session's container: by remembered id if still ours, else by label. */
  private async observe(s: SessionRecord): Promise<ContainerObservation | null> {
    if (s.containerId) {
      const c = await this.d.runtime.inspect(s.containerId);
      if (c && c.labels[LABELS.session] === s.id) return c;
    }
    const found = await this.d.runtime.list({ ...this.ownLabels, [LABELS.session]: s.id });
    if (found.length > 1) {
      // Never expected (names are unique); keep the one with our name, drop the rest.
      for (const extra of found.filter((c) => c.name !== s.containerName)) await this.d.runtime.remove(extra.id);
      return found.find((c) => c.name === s.containerName) ?? null;
    }
    return found[0] ?? null;
  }

  private async create(s: SessionRecord, log: typeof this.d.log): Promise<void> {
    await this.terminal(s, async () => {
      const image = await this.d.runtime.image(s.spec.image);
      if (!image) {
        throw new BerthError('IMAGE_NOT_FOUND', `image ${s.spec.image} is not on the engine`, { details: { image: s.spec.image } });
      }
      if (s.spec.runtime) {
        const have = await this.d.runtime.runtimes();
        if (!have.includes(s.spec.runtime)) {
          throw new BerthError('RUNTIME_NOT_FOUND', `OCI runtime ${s.spec.runtime} is not available; the engine has: ${have.join(', ')}`, {
            details: { runtime: s.spec.runtime, available: have },
          });
        }
      }
      // What the container will see of the host is checked now, not when the session was made:
      // a project directory swapped for a link since then is never mounted.
      await this.assertMountSources(s);
      const secretValues = this.d.secrets.resolve(s.spec.secrets);
      const cur = this.record(s, { state: 'creating', containerId: null });
      const labels = { ...this.ownLabels, [LABELS.project]: s.project };
      const spec = toContainerSpec(
        cur.spec,
        { sessionId: s.id, project: s.project, agent: s.agent, containerName: s.containerName, specHash: s.specHash, instanceId: this.d.instanceId },
        secretValues,
        s.spec.dockerSocket ? await this.d.runtime.engineSocket() : null,
        (await this.d.bridge?.ensure(s.id)) ?? null,
        this.d.engineLogBytes,
      );
      if (spec.networkName) spec.networkId = await this.network(spec.networkName, s.project, s.spec.network === 'internal');
      await this.d.runtime.ensureVolume(agentVolumeName(s.id), { ...labels, [LABELS.session]: s.id });
      this.assertCurrent(cur);
      let id: string;
      try {
        id = await this.d.runtime.create(spec);
      } catch (err) {
        // The network went away behind our back (project removed, docker network prune): make it again.
        if (spec.networkName && err instanceof BerthError && err.code === 'NETWORK_NOT_FOUND') {
          spec.networkId = await this.network(spec.networkName, s.project, s.spec.network === 'internal', spec.networkId);
          id = await this.d.runtime.create(spec);
        } else if (err instanceof BerthError && err.code === 'CONTAINER_NAME_TAKEN') {
          // Names are per berthd (berth-<project>-<seq>) but the engine's are global: another
          // berthd with a project of the same name, or a container made by hand, may hold it.
          // The session takes a name of its own; the retry creates under it.
          const taken = s.containerName;
          const mine = `-i${this.d.instanceId.slice(0, 6)}`;
          const next = taken.includes(mine) ? `${taken.split(mine)[0]}${mine}-${randomBytes(2).toString('hex')}` : `${taken}${mine}`;
          this.d.sessions.renameContainer(s.id, next);
          log.warn({ taken, name: next }, 'Container name taken by another container; the session gets a name of its own');
          throw err;
        } else throw err;
      }
      log.info({ containerId: id, name: s.containerName, image: s.spec.image }, 'Created container');
      this.record(cur, { containerId: id });
    });
  }

  /** The id of the project network `name`, made or adopted once per name at a time; `stale` is an id found gone. */
  private network(name: string, project: string, internal: boolean, stale?: string | null): Promise<string> {
    return this.networkLock.run(name, async () => {
      if (stale && this.networks.get(name) === stale) this.networks.delete(name);
      const known = this.networks.get(name);
      if (known) return known;
      const id = await this.d.runtime.ensureNetwork(name, { internal, labels: networkLabels(this.d.instanceId, project, internal) });
      this.networks.set(name, id);
      return id;
    });
  }

  /** What the container sees of the host must still be the paths recorded (no link swapped in since). */
  private async assertMountSources(s: SessionRecord): Promise<void> {
    for (const src of [s.spec.workspace.source, s.spec.gitObjects]) if (src) await assertRealPath(src);
    if (s.spec.gitObjects) await assertOwnObjects(s.spec.gitObjects);
  }

  /** Runs an engine write; a terminal failure marks the session failed instead of throwing. */
  private async terminal(s: SessionRecord, fn: () => Promise<void>): Promise<void> {
    try {
      await fn();
    } catch (err) {
      if (err instanceof BerthError && isTerminal(err.code)) {
        this.d.log.warn({ sessionId: s.id, code: err.code, err: err.message }, 'Session failed');
        const cur = this.d.sessions.get(s.id);
        if (cur) this.record(cur, { state: 'failed', errorCode: err.code, errorMessage: err.message });
        return;
      }
      throw err;
    }
  }

  private assertCurrent(s: SessionRecord): void {
    const cur = this.d.sessions.get(s.id);
    if (!cur || cur.generation !== s.generation) throw new GenerationMoved();
  }

  /**
   * Writes only what differs; nothing when nothing changed (a no-change pass writes neither the
   * store nor the engine). Throws GenerationMoved when desired state changed under us.
   */
  private record(s: SessionRecord, patch: ObservedPatch): SessionRecord {
    const diff: ObservedPatch = {};
    for (const [k, v] of Object.entries(patch) as [keyof ObservedPatch, never][]) {
      if (s[k] !== v) (diff as Record<string, unknown>)[k] = v;
    }
    if (!Object.keys(diff).length) return s;
    const next = this.d.sessions.observe(s.id, s.generation, diff, this.d.clock.now().toISOString());
    if (!next) throw new GenerationMoved();
    if (next.state !== s.state) this.publishState(next, s.state);
    return next;
  }

  private publishState(s: SessionRecord, previous: SessionState): void {
    this.d.bus.publish('session.state', { session: this.d.sessions.view(s), previous });
  }
}
