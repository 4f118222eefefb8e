import { randomBytes } from 'node:crypto';
import type { BerthEvent, BerthEventType } from '@berth/client-sdk/protocol';

type DataOf<T extends BerthEventType> = Extract<BerthEvent, { type: T }>['data'];
export type Listener = (event: BerthEvent) => void;

/**
 * In-process fan-out of lifecycle events to `/events` streams. Keeps the last `capacity` events so a
 * client that reconnects with `?since=SEQ` misses nothing that is still buffered.
 *
 * Sequence numbers count within one `epoch`: the bus of each daemon process has its own (a
 * restarted berthd, kill -9 included, numbers from 1 again), so a `since` is only meaningful with
 * the epoch it was read in.
 */
export class EventBus {
  private seq = 0;
  private readonly listeners = new Set<Listener>();
  private readonly ring: BerthEvent[] = [];

  constructor(
    private readonly capacity = 1000,
    private readonly now: () => Date = () => new Date(),
    readonly epoch: string = randomBytes(8).toString('hex'),
  ) {}

  publish<T extends BerthEventType>(type: T, data: DataOf<T>): BerthEvent {
    const event = { seq: ++this.seq, ts: this.now().toISOString(), type, data } as BerthEvent;
    this.ring.push(event);
    if (this.ring.length > this.capacity) this.ring.shift();
    for (const l of this.listeners) {
      try {
        l(event);
      } catch {
        // A broken subscriber must not stop the others or the publisher.
      }
    }
    return event;
  }

  /** Buffered events with `seq > since`, oldest first. */
  since(since: number): BerthEvent[] {
    return this.ring.filter((e) => e.seq > since);
  }

  subscribe(listener: Listener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  get lastSeq(): number {
    return this.seq;
  }

  /** The oldest seq still buffered (lastSeq + 1 when nothing is). */
  get oldestSeq(): number {
    return this.ring[0]?.seq ?? this.seq + 1;
  }
}
