import { setMaxListeners } from 'node:events';
import { existsSync } from 'node:fs';
import { readdir, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { LogLine } from '@berth/client-sdk/protocol';
import type { EventBus } from '../events/bus.js';
import type { Logger } from '../log.js';
import type { ContainerObservation, ContainerRuntime } from '../runtime/port.js';
import type { Clock } from '../shared/clock.js';
import type { SessionRecord } from '../store/sessions.js';
import { tsKey, type StoredLine } from './format.js';
import type { LogRetention } from './retention.js';
import { SegmentWriter } from './writer.js';

/** What the ingest reads of the store: sessions by id, and those that have a container. */
export interface IngestSessions {
  get(id: string): SessionRecord | undefined;
  withContainers(): { id: string }[];
  existing(ids: string[]): Set<string>;
}

export interface LogIngestDeps {
  runtime: ContainerRuntime;
  sessions: IngestSessions;
  bus: EventBus;
  log: Logger;
  clock: Clock;
  /** `$BERTH_HOME/logs` */
  root: string;
  segmentBytes: number;
  retention: LogRetention;
}

/** Lines (or bytes) gathered before one write; the batch is bounded so memory per session is too. */
const BATCH_LINES = 1024;
const BATCH_BYTES = 256 * 1024;
/** A batch that is not full is written after this long. */
const FLUSH_MS = 100;
/** How often a follower with nothing to follow looks again (besides session events). */
const IDLE_MS = 2000;
/** How long removal waits for the last lines of a session's container. */
const DRAIN_MS = 10_000;
/** How long a read waits for the store to hold what the engine had when the read began. */
const CATCH_UP_MS = 10_000;

/**
 * Copies every session's container output into `$BERTH_HOME/logs/<id>/` as it arrives. One
 * follower per session with a container, started when the store says so (the reconciler's create
 * or adoption), resumed from the last stored line after any restart of berthd, the engine or the
 * container. Reading is pull-based: the engine's stream is read only as fast as lines are written,
 * so a flooding agent is held back at the engine (its json-file log buffers) instead of in berthd.
 */
export class LogIngest {
  private readonly followers = new Map<string, Follower>();
  private signal: AbortSignal | null = null;

  constructor(private readonly d: LogIngestDeps) {}

  async start(outer: AbortSignal): Promise<void> {
    // One listener on the daemon's signal; the followers (one per session) listen to this one.
    const inner = new AbortController();
    setMaxListeners(0, inner.signal);
    const onAbort = () => inner.abort();
    if (outer.aborted) return;
    outer.addEventListener('abort', onAbort, { once: true });
    const signal = inner.signal;
    this.signal = signal;
    this.d.log.info('Starting log ingest');
    const unsubscribe = this.d.bus.subscribe((e) => {
      if (e.type === 'session.state' || e.type === 'session.created') {
        const s = e.data.session;
        if (s.containerId) this.ensure(s.id);
        this.followers.get(s.id)?.poke();
      }
    });
    try {
      await this.markOrphans().catch((err: Error) => this.d.log.warn({ err: err.message }, 'Cannot look for stored output of removed sessions'));
      while (!signal.aborted) {
        for (const { id } of this.d.sessions.withContainers()) this.ensure(id);
        await this.d.clock.sleep(IDLE_MS * 5, signal);
      }
    } finally {
      unsubscribe();
      outer.removeEventListener('abort', onAbort);
      await Promise.all([...this.followers.values()].map((f) => f.done));
      this.d.log.info('Stopped log ingest');
    }
  }

  /**
   * The session is being deleted (its container is gone): waits a bounded time for the follower to
   * store the last lines, closes it and writes `removed.json`.
   */
  async removed(s: Pick<SessionRecord, 'id' | 'name' | 'project'>): Promise<void> {
    const f = this.followers.get(s.id);
    if (f) await f.finish(DRAIN_MS);
    if (!existsSync(join(this.d.root, s.id))) return; // it never had a container: nothing stored
    await writeRemoved(join(this.d.root, s.id), { removedAt: this.d.clock.now().toISOString(), id: s.id, name: s.name, project: s.project }).catch(
      (err: Error) => this.d.log.warn({ sessionId: s.id, err: err.message }, 'Cannot mark stored output as removed'),
    );
  }

  /**
   * Resolves once the store holds every line the engine had for the session's container when this
   * was called (its last line's time is stored), or after `ms` (a flood the ingest is behind on:
   * the read then shows what is stored so far). A read of a finished session so never misses its
   * last lines to the ingest's batching.
   */
  async caughtUp(id: string, ms = CATCH_UP_MS): Promise<void> {
    const containerId = this.d.sessions.get(id)?.containerId;
    if (!containerId || !this.signal || this.signal.aborted) return;
    let last: LogLine | undefined;
    try {
      for await (const l of this.d.runtime.logs(containerId, { tail: 1 }) as AsyncIterable<LogLine>) last = l;
    } catch {
      return; // the container is gone: what the ingest read is all there is
    }
    if (!last) return;
    const target = tsKey(last.ts);
    this.ensure(id);
    const deadline = Date.now() + ms;
    while (Date.now() < deadline) {
      const f = this.followers.get(id);
      if (!f) return;
      const at = f.position?.ts;
      if (at && tsKey(at) >= target) return;
      f.poke();
      // Real time, not the injected clock: a bound on a wait for I/O, which a test's clock does not drive.
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  private ensure(id: string): void {
    if (!this.signal || this.signal.aborted || this.followers.has(id)) return;
    const f = new Follower(id, this.d, this.signal);
    this.followers.set(id, f);
    void f.done.finally(() => {
      if (this.followers.get(id) === f) this.followers.delete(id);
    });
  }

  /** Directories of sessions removed while berthd was down get their removed.json. */
  private async markOrphans(): Promise<void> {
    let names: string[];
    try {
      names = await readdir(this.d.root);
    } catch {
      return;
    }
    const ids = names.filter((n) => /^[A-Za-z0-9_-]{1,64}$/.test(n));
    const live = this.d.sessions.existing(ids);
    for (const id of ids) {
      if (live.has(id)) continue;
      const entries = await readdir(join(this.d.root, id)).catch(() => [] as string[]);
      if (entries.includes('removed.json')) continue;
      await writeRemoved(join(this.d.root, id), { removedAt: this.d.clock.now().toISOString(), id, name: null, project: null });
    }
  }
}

async function writeRemoved(dir: string, body: Record<string, unknown>): Promise<void> {
  const tmp = join(dir, 'removed.json.tmp');
  await writeFile(tmp, `${JSON.stringify(body)}\n`, { mode: 0o600 });
  await rename(tmp, join(dir, 'removed.json'));
}

/** One run of a container: a new id or a new start time is a restart. */
interface Run {
  id: string;
  startedAt: string | null;
}

/** Where a restart marker goes: before the first line read, or the first stamped after `afterKey`. */
interface Restart {
  afterKey: string | null;
}

/** Whether the run had started (the engine gives a never-started container a zero time). */
function started(r: Run): boolean {
  return !!r.startedAt && !r.startedAt.startsWith('0001-');
}

class Follower {
  readonly done: Promise<void>;
  private readonly stop = new AbortController();
  private wake: (() => void) | null = null;
  private poked = false;
  private finishing = false;
  private writer: SegmentWriter | null = null;
  private readonly log: Logger;
  /** Lines that could not be stored (a failed write); said in a marker once writing works again. */
  private dropped = 0;
  private lastDroppedTs: string | null = null;

  constructor(
    readonly id: string,
    private readonly d: LogIngestDeps,
    signal: AbortSignal,
  ) {
    this.log = d.log.child({ sessionId: id });
    const onAbort = () => this.stop.abort();
    signal.addEventListener('abort', onAbort, { once: true });
    this.done = this.run()
      .catch((err: Error) => this.log.error({ err: err.message }, 'Failed log ingest'))
      .finally(() => signal.removeEventListener('abort', onAbort));
  }

  /** Where the stored output ends (null before the store is open). */
  get position(): { ts: string | null } | null {
    return this.writer?.position ?? null;
  }

  poke(): void {
    this.poked = true;
    this.wake?.();
  }

  /** Lets the current follow run to its end (the container is gone), at most `ms`, then stops. */
  async finish(ms: number): Promise<void> {
    this.finishing = true;
    this.poke();
    const timer = setTimeout(() => this.stop.abort(), ms);
    try {
      await this.done;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Waits `ms`, or less when poked (a poke while not waiting cuts the next wait short). */
  private async idle(ms: number): Promise<void> {
    if (this.poked || this.stop.signal.aborted) {
      this.poked = false;
      return;
    }
    const signal = this.stop.signal;
    await new Promise<void>((resolve) => {
      const t = setTimeout(done, ms);
      signal.addEventListener('abort', done, { once: true });
      this.wake = done;
      function done() {
        clearTimeout(t);
        signal.removeEventListener('abort', done);
        resolve();
      }
    });
    this.wake = null;
    this.poked = false;
  }

  private async run(): Promise<void> {
    const dir = join(this.d.root, this.id);
    this.writer = await SegmentWriter.open(dir, {
      segmentBytes: this.d.segmentBytes,
      onCompressed: async () => {
        await this.d.retention.afterRotation(this.id).catch((err: Error) => this.log.warn({ err: err.message }, 'Failed log retention'));
      },
      onError: (err) => this.log.warn({ err: err.message }, 'Cannot compress a log segment'),
    });
    this.log.debug({ resume: this.writer.position }, 'Following container output');
    let previous: Run | null = null;
    /** The run whose output was read to its end (the container had stopped). */
    let finished: Run | null = null;
    try {
      while (!this.stop.signal.aborted) {
        const s = this.d.sessions.get(this.id);
        if (!s) break;
        const c = s.containerId ? await this.inspect(s.containerId) : null;
        if (!c) {
          if (this.finishing) break;
          await this.idle(IDLE_MS);
          continue;
        }
        const run: Run = { id: c.id, startedAt: c.startedAt };
        if (finished && finished.id === run.id && finished.startedAt === run.startedAt && c.status !== 'running') {
          if (this.finishing) break;
          // Read to its end already. berth (not the engine) restarts containers, and its session
          // events wake us at once; the look every 30 s is a backstop.
          await this.idle(IDLE_MS * 15);
          continue;
        }
        let restart: Restart | null = null;
        if (previous && started(previous) && (previous.id !== run.id || previous.startedAt !== run.startedAt)) {
          // The earlier run read to its end: every line from here is the new run's. Else the new
          // run's lines are those after the earlier run finished (the engine keeps FinishedAt).
          const drained = finished !== null && finished.id === previous.id && finished.startedAt === previous.startedAt;
          restart = { afterKey: drained || previous.id !== run.id || !c.finishedAt ? null : tsKey(c.finishedAt) };
        }
        previous = run;
        const ended = await this.followOnce(c, restart);
        if (ended === 'aborted') break;
        const after = await this.inspect(c.id);
        // The engine (20.10) may end a follow when the container stops before it has sent all that
        // was logged: a stopped run is done only after a read that began once it had stopped.
        if (c.status !== 'running' && (!after || after.status !== 'running')) finished = { id: c.id, startedAt: after?.startedAt ?? run.startedAt };
        else if (ended === 'error') await this.idle(IDLE_MS);
        // The engine (20.10) ends a follow of a container not yet started at once: wait for the
        // start (the session's event wakes this).
        else if (c.status === 'created' && after?.status === 'created') await this.idle(IDLE_MS);
      }
    } finally {
      await this.writer.close();
    }
  }

  private async inspect(id: string): Promise<ContainerObservation | null> {
    try {
      return await this.d.runtime.inspect(id);
    } catch (err) {
      this.log.debug({ err: (err as Error).message }, 'Cannot inspect the container');
      await this.idle(IDLE_MS);
      return null;
    }
  }

  /**
   * Reads the container's output from the resume point to the end of the stream. Lines the engine
   * sends again are skipped by time and count; a resume point the engine no longer holds is marked
   * as lost output (a `dropped: null` line).
   */
  private async followOnce(c: ContainerObservation, restart: Restart | null): Promise<'ended' | 'error' | 'aborted'> {
    const writer = this.writer!;
    const from = writer.position;
    /** The newest time stored, how many whole lines carry it, and how many of those the stream will send again. */
    let maxKey = from.ts === null ? null : tsKey(from.ts);
    let atMax = from.count;
    let skip = from.count;
    // Our last line came from this run (it started before): the engine must still hold it, or what
    // lay between was rotated out while berthd was not reading.
    const checkResume = from.ts !== null && !restart && started({ id: c.id, startedAt: c.startedAt }) && tsKey(c.startedAt!) <= maxKey!;
    let first = true;
    /** Lines the engine sent twice (20.10's json-file reader starting a rotated file over), skipped. */
    let resent = 0;
    let pendingRestart = restart;
    const follow = new AbortController();
    const onStop = () => follow.abort();
    this.stop.signal.addEventListener('abort', onStop, { once: true });

    let batch: StoredLine[] = [];
    let batchBytes = 0;
    let writing: Promise<void> = Promise.resolve();
    const flush = async (): Promise<void> => {
      await writing;
      if (!batch.length) return;
      const lines = batch;
      batch = [];
      batchBytes = 0;
      writing = this.write(lines);
      await writing;
    };
    let timer: NodeJS.Timeout | null = null;
    const schedule = () => {
      timer ??= setTimeout(() => {
        timer = null;
        void flush();
      }, FLUSH_MS);
    };
    try {
      for await (const l of this.d.runtime.logs(c.id, { follow: true, ...(from.ts ? { since: from.ts } : {}), signal: follow.signal }) as AsyncIterable<LogLine>) {
        const k = tsKey(l.ts);
        if (first && checkResume && k > maxKey!) {
          batch.push({ ts: l.ts, stream: 'berth', line: `berth: output lost: the engine's log no longer holds what the agent wrote between ${from.ts} and ${l.ts} (rotated out of its bounded log before berthd read it); how many lines is not known`, dropped: null, event: 'lost' });
          this.log.warn({ from: from.ts, to: l.ts }, 'Container output was rotated out of the engine log before it was stored');
        }
        first = false;
        if (maxKey !== null) {
          if (k < maxKey) {
            skip = atMax; // the engine reads a file again: what it sends up to our newest line is stored
            resent++;
            continue;
          }
          if (k === maxKey && skip > 0) {
            // A piece of a long line belongs to the whole line its last piece completes.
            if (!l.partial) skip--;
            continue;
          }
        }
        if (maxKey === null || k > maxKey) {
          maxKey = k;
          atMax = 0;
          skip = 0;
        }
        if (!l.partial) atMax++;
        if (pendingRestart && (pendingRestart.afterKey === null || k > pendingRestart.afterKey)) {
          batch.push({ ts: l.ts, stream: 'berth', line: 'berth: container restarted', event: 'restart' });
          pendingRestart = null;
        }
        batch.push(l);
        batchBytes += l.line.length;
        if (batch.length >= BATCH_LINES || batchBytes >= BATCH_BYTES) {
          await flush();
          // Let RPC and the other sessions in between two batches of a flood.
          await new Promise((r) => setImmediate(r));
        } else schedule();
      }
      return follow.signal.aborted ? 'aborted' : 'ended';
    } catch (err) {
      if (follow.signal.aborted) return 'aborted';
      this.log.debug({ err: (err as Error).message }, 'Container output stream broke; following again');
      return 'error';
    } finally {
      if (timer) clearTimeout(timer);
      await flush().catch(() => {});
      if (resent) this.log.debug({ resent }, 'Skipped lines the engine sent again');
      this.stop.signal.removeEventListener('abort', onStop);
    }
  }

  /** Writes one batch; a failed write counts its lines as dropped, said in a marker by the next good write. */
  private async write(lines: StoredLine[]): Promise<void> {
    const out = this.dropped ? [{ ts: this.lastDroppedTs!, stream: 'berth' as const, line: `berth: ${this.dropped} lines dropped (could not store them)`, dropped: this.dropped }, ...lines] : lines;
    try {
      await this.writer!.append(out);
      if (this.dropped) this.log.warn({ dropped: this.dropped }, 'Stored output again after dropping lines');
      this.dropped = 0;
    } catch (err) {
      if (!this.dropped) this.log.error({ err: (err as Error).message }, 'Cannot store container output; counting dropped lines');
      this.dropped += lines.filter((l) => l.stream !== 'berth').length;
      this.lastDroppedTs = lines.at(-1)!.ts;
    }
  }
}
