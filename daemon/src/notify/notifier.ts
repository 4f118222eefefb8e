import { randomBytes } from 'node:crypto';
import type { BerthEvent, Notification } from '@berth/client-sdk/protocol';
import type { EventBus } from '../events/bus.js';
import type { Logger } from '../log.js';
import type { DesktopNotifier } from './desktop.js';
import type { WebhookQueue } from './webhooks.js';

/**
 * What a notification names of a session that the event itself does not carry, and whether its
 * agent asked for no notice when stuck (`onStuck: none`).
 */
export type SessionLookup = (id: string) => { name: string; project: string; agent: string; onStuck?: 'restart' | 'notify' | 'none' } | undefined;

/** Longest message a notification carries; the rest is cut (an agent's reason can be long). */
export const MAX_MESSAGE = 500;

/**
 * Whether `event` is worth a notification, and what it says (without `id`). Pure but for the
 * lookup: the activity and budget events name a session without its project and agent.
 */
export function toNotification(event: BerthEvent, lookup: SessionLookup): Omit<Notification, 'id'> | null {
  const make = (kind: Notification['kind'], s: Notification['session'], message: string) => ({
    kind,
    session: { id: s.id, name: s.name, project: s.project, agent: s.agent },
    message: message.length > MAX_MESSAGE ? `${message.slice(0, MAX_MESSAGE - 1)}…` : message,
    ts: event.ts,
  });
  const known = (id: string, name: string) => {
    const s = lookup(id);
    return { id, name, project: s?.project ?? '', agent: s?.agent ?? '' };
  };
  switch (event.type) {
    case 'session.state': {
      const s = event.data.session;
      if (s.state === 'exited' && s.exitCode !== null && s.exitCode !== 0) return make('exited', s, `exited with code ${s.exitCode}`);
      if (s.state === 'failed') return make('failed', s, s.error ? `failed: ${s.error.code}: ${s.error.message}` : 'failed');
      return null;
    }
    case 'session.activity': {
      const { id, name, activity } = event.data;
      if (activity.state !== 'waiting-input' && activity.state !== 'stuck') return null;
      if (activity.state === 'stuck' && lookup(id)?.onStuck === 'none') return null;
      const detail = reasonText(activity.reason);
      const what = activity.state === 'waiting-input' ? 'waiting for input' : 'stuck';
      return make(activity.state, known(id, name), detail ? `${what}: ${detail}` : what);
    }
    case 'session.budget': {
      const { id, name, usedTokens, budgetTokens } = event.data;
      return make('budget', known(id, name), `BUDGET_EXCEEDED: used ${usedTokens} of its budget of ${budgetTokens} tokens`);
    }
    default:
      return null;
  }
}

/** `hook:Notification: Claude needs your permission` → `Claude needs your permission`. */
function reasonText(reason: string | null): string {
  if (!reason) return '';
  const m = /^hook:[A-Za-z]+(?::\s*(.*))?$/s.exec(reason);
  return m ? (m[1] ?? '') : reason;
}

export interface NotifierDeps {
  bus: EventBus;
  lookup: SessionLookup;
  /** null: the host has no desktop notifications. */
  desktop: DesktopNotifier | null;
  webhooks: WebhookQueue[];
  log: Logger;
  newId?: () => string;
}

/**
 * Turns the bus's session events into notifications: published back on the bus as `notification`
 * (so `/events` and `berth watch` have them), shown on the desktop, queued for each webhook.
 * Nothing here blocks the publisher: a webhook's deliveries run in its own loop.
 */
export class Notifier {
  /** The budget each session was last notified for: the bridge repeats its event while the agent retries. */
  private readonly budgetNotified = new Map<string, number>();
  private readonly newId: () => string;
  private webhooks: WebhookQueue[];
  /** Each started webhook's loop, stopped on its own when a reload drops it. */
  private readonly loops = new Map<WebhookQueue, { stop: AbortController; done: Promise<void> }>();
  private signal: AbortSignal | null = null;

  constructor(private readonly d: NotifierDeps) {
    this.newId = d.newId ?? (() => randomBytes(8).toString('hex'));
    this.webhooks = [...d.webhooks];
  }

  /**
   * The webhooks from a reloaded config (`notifyWebhooks`, live). A webhook with the same url and
   * events keeps its queue and its pending deliveries; a dropped one stops (what it still held is
   * not sent); a new one starts with the next notification.
   */
  setWebhooks(next: WebhookQueue[]): void {
    const key = (w: WebhookQueue) => JSON.stringify([w.hook.url, w.hook.events ?? null]);
    const kept = new Map(this.webhooks.map((w) => [key(w), w]));
    const list = next.map((w) => kept.get(key(w)) ?? w);
    for (const w of this.webhooks) if (!list.includes(w)) this.stopLoop(w);
    this.webhooks = list;
    if (this.signal && !this.signal.aborted) for (const w of list) this.startLoop(w);
    this.d.log.info({ webhooks: list.map((w) => w.target) }, 'Webhooks changed');
  }

  private startLoop(w: WebhookQueue): void {
    if (this.loops.has(w) || !this.signal) return;
    const stop = new AbortController();
    const onAbort = () => stop.abort();
    this.signal.addEventListener('abort', onAbort, { once: true });
    const done = w.start(stop.signal).finally(() => this.signal?.removeEventListener('abort', onAbort));
    this.loops.set(w, { stop, done });
  }

  private stopLoop(w: WebhookQueue): void {
    const loop = this.loops.get(w);
    if (!loop) return;
    this.loops.delete(w);
    loop.stop.abort();
  }

  /** Runs until `signal` aborts; resolves once every webhook loop has ended. */
  async start(signal: AbortSignal): Promise<void> {
    if (signal.aborted) return;
    const { log } = this.d;
    log.info({ desktop: this.d.desktop?.command ?? null, webhooks: this.webhooks.length }, 'Starting notifications');
    // Handled after the publish that delivered it returns: the notification must not overtake
    // its cause on the other subscribers' streams.
    const unsubscribe = this.d.bus.subscribe((e) => queueMicrotask(() => this.handle(e)));
    this.signal = signal;
    for (const w of this.webhooks) this.startLoop(w);
    log.info('Started notifications');
    await new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
    unsubscribe();
    await Promise.all([...this.loops.values()].map((l) => l.done));
    this.loops.clear();
  }

  /** One event off the bus; never throws (a failure is logged). */
  handle(event: BerthEvent): void {
    try {
      if (event.type === 'session.removed') {
        this.budgetNotified.delete(event.data.id);
        return;
      }
      if (event.type === 'session.budget') {
        if (this.budgetNotified.get(event.data.id) === event.data.budgetTokens) return;
        this.budgetNotified.set(event.data.id, event.data.budgetTokens);
      }
      const n = toNotification(event, this.d.lookup);
      if (!n) return;
      this.notify({ id: this.newId(), ...n });
    } catch (err) {
      this.d.log.warn({ err: (err as Error).message, event: event.type }, 'Failed to notify');
    }
  }

  private notify(n: Notification): void {
    this.d.log.info({ sessionId: n.session.id, kind: n.kind, notificationId: n.id }, 'Notifying');
    this.d.bus.publish('notification', n);
    this.d.desktop?.notify(n);
    for (const w of this.webhooks) w.push(n);
  }
}
