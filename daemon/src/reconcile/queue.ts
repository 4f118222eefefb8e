import type { Clock } from '../shared/clock.js';

/**
 * A deduplicating work queue of keys, as controller-runtime's: a key is queued at most once; a key
 * added while being processed is marked dirty and queued again when its worker is done, so one key
 * is never processed by two workers at once and no change is lost.
 */
export class WorkQueue {
  private readonly queue: string[] = [];
  private readonly queued = new Set<string>();
  private readonly processing = new Set<string>();
  private readonly dirty = new Set<string>();
  private readonly delayed = new Map<string, { at: number; cancel: AbortController }>();
  private readonly waiters: ((key: string | null) => void)[] = [];
  private shutdown = false;

  constructor(private readonly clock: Clock) {}

  add(key: string): void {
    if (this.shutdown) return;
    if (this.processing.has(key)) {
      this.dirty.add(key);
      return;
    }
    if (this.queued.has(key)) return;
    this.queued.add(key);
    const w = this.waiters.shift();
    if (w) {
      this.queued.delete(key);
      this.processing.add(key);
      w(key);
    } else {
      this.queue.push(key);
    }
  }

  /** Adds `key` after `ms`; an earlier pending add-after for the same key wins. */
  addAfter(key: string, ms: number): void {
    if (this.shutdown) return;
    if (ms <= 0) return this.add(key);
    const at = this.clock.now().getTime() + ms;
    const cur = this.delayed.get(key);
    if (cur && cur.at <= at) return;
    cur?.cancel.abort();
    const cancel = new AbortController();
    this.delayed.set(key, { at, cancel });
    void this.clock.sleep(ms, cancel.signal).then(() => {
      if (cancel.signal.aborted) return;
      this.delayed.delete(key);
      this.add(key);
    });
  }

  /** Next key to process, or null once shut down. Call done(key) when finished. */
  get(): Promise<string | null> {
    if (this.shutdown) return Promise.resolve(null);
    const key = this.queue.shift();
    if (key !== undefined) {
      this.queued.delete(key);
      this.processing.add(key);
      return Promise.resolve(key);
    }
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  done(key: string): void {
    this.processing.delete(key);
    if (this.dirty.delete(key)) this.add(key);
  }

  stop(): void {
    this.shutdown = true;
    for (const d of this.delayed.values()) d.cancel.abort();
    this.delayed.clear();
    for (const w of this.waiters.splice(0)) w(null);
  }
}
