import { cpus, totalmem } from 'node:os';
import type { EventBus } from '../events/bus.js';
import type { Logger } from '../log.js';
import type { Clock } from '../shared/clock.js';
import type { SessionsRepo } from '../store/sessions.js';
import type { SessionScheduler } from './service.js';

/**
 * What `BERTH_MAX_RUNNING=auto` means: as many agents as the host holds at the default limits.
 * Memory is a hard limit, so it counts fully (90% of the host's); CPU limits are caps agents share,
 * so four agents may share each core.
 */
export function autoMaxRunning(memoryBytes: number, cpuLimit: number, host = { memory: totalmem(), cpus: cpus().length }): number {
  const byMemory = Math.floor((host.memory * 0.9) / memoryBytes);
  const byCpu = Math.floor((host.cpus * 4) / cpuLimit);
  return Math.max(1, Math.min(byMemory, byCpu));
}

/**
 * The capacity cap: at most `cap` sessions hold a slot (run, or are on their way to). A start
 * beyond it waits as `pending` (queued) and returns at once; whenever a session ends, stops or goes
 * away, the ones waiting longest (higher priority first) get the free slots and start by themselves.
 * The decision is taken in the database, so it holds across restarts of berthd. cap 0: no cap.
 */
export class Admission {
  constructor(
    private readonly d: { sessions: SessionsRepo; reconciler: SessionScheduler; bus: EventBus; log: Logger; clock: Clock },
    readonly cap: number,
  ) {}

  /** Whether the session must wait for a slot (it is then marked so). */
  mustWait(id: string, priority: number): boolean {
    if (this.cap <= 0) return false;
    const waits = this.d.sessions.queueIfFull(id, this.cap, this.d.clock.now().toISOString(), priority);
    if (waits) this.d.log.info({ sessionId: id, cap: this.cap }, 'Session waits for a slot');
    return waits;
  }

  /** Hands out free slots now. */
  admit(): void {
    if (this.cap <= 0) return;
    for (const id of this.d.sessions.admit(this.cap)) {
      this.d.log.info({ sessionId: id }, 'Session got a slot');
      this.d.reconciler.enqueue(id);
    }
  }

  /** Admits on every change of a session's state or removal, and every few seconds as a backstop. */
  async start(signal: AbortSignal): Promise<void> {
    if (this.cap <= 0) return;
    const off = this.d.bus.subscribe((e) => {
      if (e.type === 'session.state' || e.type === 'session.removed') queueMicrotask(() => this.admit());
    });
    try {
      this.admit();
      while (!signal.aborted) {
        await this.d.clock.sleep(5000, signal);
        if (!signal.aborted) this.admit();
      }
    } finally {
      off();
    }
  }
}
