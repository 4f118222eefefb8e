import type { Notification, NotificationKind } from '@berth/client-sdk/protocol';
import type { Logger } from '../log.js';
import type { Clock } from '../shared/clock.js';
import { VERSION } from '../version.js';

/** One `notifyWebhooks` entry: where to POST, and which kinds (all when absent). */
export interface Webhook {
  url: string;
  events?: NotificationKind[] | undefined;
}

/** One POST; resolves with the HTTP status, rejects when no answer came (refused, reset, aborted). */
export type Post = (url: string, body: string, headers: Record<string, string>, signal: AbortSignal) => Promise<number>;

export const fetchPost: Post = async (url, body, headers, signal) => {
  const res = await fetch(url, { method: 'POST', body, headers, signal });
  await res.body?.cancel().catch(() => {});
  return res.status;
};

export interface WebhookOptions {
  clock: Clock;
  log: Logger;
  post?: Post;
  /** Notifications waiting for this webhook at most; past it the oldest is dropped (default 100). */
  capacity?: number;
  /** Tries per notification (default 5). */
  attempts?: number;
  /** Wait after the first failed try, doubled after each next one (default 1 s: 1, 2, 4, 8 s). */
  firstDelayMs?: number;
  /** One POST's limit, answer included (default 10 s). */
  timeoutMs?: number;
}

type Outcome = 'sent' | 'retry' | 'refused';

/** Where a webhook points, for logs: its URL may carry a token in the path, query or userinfo. */
export function webhookTarget(url: string): string {
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.host}`;
  } catch {
    return '(invalid url)';
  }
}

/**
 * One webhook's deliveries: a bounded FIFO that `push` fills without waiting, and a loop that
 * POSTs each notification in order, retrying with exponential backoff on the injected clock.
 * A 2xx is delivered; no answer, 408, 429 and 5xx are tried again; any other status is final.
 */
export class WebhookQueue {
  private readonly queue: Notification[] = [];
  private wake: (() => void) | null = null;
  private readonly post: Post;
  private readonly capacity: number;
  private readonly attempts: number;
  private readonly firstDelayMs: number;
  private readonly timeoutMs: number;
  private readonly log: Logger;
  readonly target: string;

  constructor(
    readonly hook: Webhook,
    private readonly opts: WebhookOptions,
  ) {
    this.post = opts.post ?? fetchPost;
    this.capacity = opts.capacity ?? 100;
    this.attempts = opts.attempts ?? 5;
    this.firstDelayMs = opts.firstDelayMs ?? 1000;
    this.timeoutMs = opts.timeoutMs ?? 10_000;
    this.target = webhookTarget(hook.url);
    this.log = opts.log.child({ webhook: this.target });
  }

  /** Notifications waiting, the one being tried not included. */
  get pending(): number {
    return this.queue.length;
  }

  /** Queues `n` if this webhook wants its kind; returns at once. */
  push(n: Notification): void {
    if (this.hook.events && !this.hook.events.includes(n.kind)) return;
    if (this.queue.length >= this.capacity) {
      const dropped = this.queue.shift()!;
      this.log.warn({ notificationId: dropped.id, kind: dropped.kind, capacity: this.capacity }, 'Webhook queue full: dropped its oldest notification');
    }
    this.queue.push(n);
    this.wake?.();
  }

  /** Delivers until `signal` aborts; what is still queued then is not sent. */
  async start(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      const n = this.queue.shift();
      if (n) await this.deliver(n, signal);
      else await this.idle(signal);
    }
    if (this.queue.length) this.log.info({ notifications: this.queue.length }, 'Webhook notifications not sent: berthd is stopping');
    this.queue.length = 0;
  }

  private idle(signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        signal.removeEventListener('abort', done);
        this.wake = null;
        resolve();
      };
      this.wake = done;
      signal.addEventListener('abort', done, { once: true });
    });
  }

  /** Tries `n` until it is delivered, refused, out of tries or berthd stops; true when delivered. */
  async deliver(n: Notification, signal: AbortSignal): Promise<boolean> {
    const body = JSON.stringify(n);
    for (let attempt = 1; ; attempt++) {
      const { outcome, detail } = await this.once(body, n, attempt, signal);
      if (outcome === 'sent') {
        this.log.debug({ notificationId: n.id, attempt }, 'Webhook notified');
        return true;
      }
      if (signal.aborted) return false;
      if (outcome === 'refused' || attempt >= this.attempts) {
        this.log.warn({ notificationId: n.id, kind: n.kind, attempt, detail }, `Failed to notify webhook: ${detail}`);
        return false;
      }
      const delayMs = this.firstDelayMs * 2 ** (attempt - 1);
      this.log.debug({ notificationId: n.id, attempt, detail, delayMs }, 'Webhook not notified; trying again');
      await this.opts.clock.sleep(delayMs, signal);
      if (signal.aborted) return false;
    }
  }

  private async once(body: string, n: Notification, attempt: number, signal: AbortSignal): Promise<{ outcome: Outcome; detail: string }> {
    const ctl = new AbortController();
    const abort = () => ctl.abort();
    signal.addEventListener('abort', abort, { once: true });
    const timer = setTimeout(abort, this.timeoutMs);
    try {
      const status = await this.post(
        this.hook.url,
        body,
        {
          'content-type': 'application/json',
          'user-agent': `berthd/${VERSION}`,
          'x-berth-notification': n.id,
          'x-berth-attempt': String(attempt),
        },
        ctl.signal,
      );
      if (status >= 200 && status < 300) return { outcome: 'sent', detail: `HTTP ${status}` };
      const retry = status === 408 || status === 429 || status >= 500;
      return { outcome: retry ? 'retry' : 'refused', detail: `HTTP ${status}` };
    } catch (err) {
      const e = err as Error & { cause?: { code?: string; message?: string } };
      const detail = ctl.signal.aborted && !signal.aborted ? `no answer within ${this.timeoutMs} ms` : (e.cause?.code ?? e.cause?.message ?? e.message);
      return { outcome: 'retry', detail };
    } finally {
      clearTimeout(timer);
      signal.removeEventListener('abort', abort);
    }
  }
}
