import type { Clock } from '../shared/clock.js';
import type { Logger } from '../log.js';
import { LABELS } from '../runtime/labels.js';
import type { ContainerRuntime, ContainerSummary } from '../runtime/port.js';

/**
 * Removes containers that carry this berthd's labels but belong to no session, once each has been
 * seen that way for the grace period (a container made just before its row, in a crash, is not
 * one). Its /agent volume is kept.
 */
export class OrphanSweeper {
  private readonly firstSeen = new Map<string, number>();

  constructor(
    private readonly runtime: Pick<ContainerRuntime, 'stop' | 'remove'>,
    private readonly clock: Clock,
    private readonly log: Logger,
    private readonly graceMs: number,
  ) {}

  /** `candidates`: the containers of no session in the listing the resync just made. Returns the ids removed. */
  async sweep(candidates: ContainerSummary[]): Promise<string[]> {
    const now = this.clock.now().getTime();
    const removed: string[] = [];
    const seen = new Set<string>();
    for (const c of candidates) {
      const sid = c.labels[LABELS.session];
      seen.add(c.id);
      const first = this.firstSeen.get(c.id) ?? now;
      this.firstSeen.set(c.id, first);
      if (now - first >= this.graceMs) {
        this.log.warn({ containerId: c.id, name: c.name, sessionId: sid }, 'Removing orphan container (its /agent volume is kept)');
        await this.runtime.stop(c.id, 3);
        await this.runtime.remove(c.id);
        this.firstSeen.delete(c.id);
        removed.push(c.id);
      }
    }
    for (const id of this.firstSeen.keys()) if (!seen.has(id)) this.firstSeen.delete(id);
    return removed;
  }
}
