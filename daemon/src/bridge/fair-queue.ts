/**
 * At most `limit` holders at once, handed out fairly: waiters queue per key (a session), and a freed
 * slot goes to the next key in turn, so one session firing fifty requests cannot starve another
 * that sends one. A waiter is never dropped; one whose signal aborts leaves the queue.
 */
export class FairQueue {
  private active = 0;
  private readonly waiting = new Map<string, (() => void)[]>();
  /** Keys with waiters, in turn order. */
  private readonly turn: string[] = [];

  constructor(private max: number) {}

  get limit(): number {
    return this.max;
  }

  /** A new limit (config `modelMaxInflight`, live): a higher one admits waiters at once; a lower one lets the holders over it finish. */
  setLimit(limit: number): void {
    this.max = limit;
    this.next();
  }

  get inFlight(): number {
    return this.active;
  }

  get queued(): number {
    let n = 0;
    for (const q of this.waiting.values()) n += q.length;
    return n;
  }

  /** Resolves with a release function once a slot is this caller's. */
  acquire(key: string, signal?: AbortSignal): Promise<() => void> {
    if (signal?.aborted) return Promise.reject(signal.reason ?? new Error('aborted'));
    if (this.active < this.limit && this.turn.length === 0) {
      this.active++;
      return Promise.resolve(this.releaser());
    }
    return new Promise((resolve, reject) => {
      const grant = () => {
        signal?.removeEventListener('abort', onAbort);
        resolve(this.releaser());
      };
      const onAbort = () => {
        const q = this.waiting.get(key);
        const i = q?.indexOf(grant) ?? -1;
        if (q && i >= 0) {
          q.splice(i, 1);
          if (!q.length) this.dropKey(key);
        }
        reject(signal!.reason ?? new Error('aborted'));
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      let q = this.waiting.get(key);
      if (!q) {
        q = [];
        this.waiting.set(key, q);
        this.turn.push(key);
      }
      q.push(grant);
    });
  }

  private releaser(): () => void {
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.active--;
      this.next();
    };
  }

  private next(): void {
    while (this.active < this.limit && this.turn.length) {
      const key = this.turn.shift()!;
      const q = this.waiting.get(key)!;
      const grant = q.shift()!;
      if (q.length) this.turn.push(key);
      else this.waiting.delete(key);
      this.active++;
      grant();
    }
  }

  private dropKey(key: string): void {
    this.waiting.delete(key);
    const i = this.turn.indexOf(key);
    if (i >= 0) this.turn.splice(i, 1);
  }
}
