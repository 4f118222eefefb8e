import pino from 'pino';
import { describe, expect, it } from 'vitest';
import type { BerthEvent, Notification, Session, SessionActivity } from '@berth/client-sdk/protocol';
import { EventBus } from '../events/bus.js';
import type { DesktopNotifier } from './desktop.js';
import { Notifier, toNotification, type SessionLookup } from './notifier.js';
import type { WebhookQueue } from './webhooks.js';

const log = pino({ level: 'silent' });
const TS = '2026-01-02T03:04:05.000Z';
const lookup: SessionLookup = (id) => (id === 's1' ? { name: 'fixer', project: 'web', agent: 'claude' } : undefined);

function session(patch: Partial<Session>): Session {
  return {
    id: 's1',
    name: 'fixer',
    project: 'web',
    agent: 'claude',
    state: 'running',
    exitCode: null,
    error: null,
    ...patch,
  } as Session;
}

const stateEvent = (patch: Partial<Session>, previous: Session['state'] = 'running'): BerthEvent => ({
  seq: 1,
  ts: TS,
  type: 'session.state',
  data: { session: session(patch), previous },
});
const activityEvent = (activity: Partial<SessionActivity>, id = 's1'): BerthEvent => ({
  seq: 1,
  ts: TS,
  type: 'session.activity',
  data: { id, name: 'fixer', activity: { state: 'working', since: TS, reason: null, ...activity }, previous: 'working' },
});
const budgetEvent = (budgetTokens = 1000, usedTokens = 1200): BerthEvent => ({
  seq: 1,
  ts: TS,
  type: 'session.budget',
  data: { id: 's1', name: 'fixer', code: 'BUDGET_EXCEEDED', budgetTokens, usedTokens },
});

describe('toNotification', () => {
  it('an exit with a non-zero code is `exited`; a clean exit, a stop or a start is nothing', () => {
    expect(toNotification(stateEvent({ state: 'exited', exitCode: 3 }), lookup)).toEqual({
      kind: 'exited',
      session: { id: 's1', name: 'fixer', project: 'web', agent: 'claude' },
      message: 'exited with code 3',
      ts: TS,
    });
    expect(toNotification(stateEvent({ state: 'exited', exitCode: 0 }), lookup)).toBeNull();
    expect(toNotification(stateEvent({ state: 'exited', exitCode: null }), lookup)).toBeNull();
    expect(toNotification(stateEvent({ state: 'stopped', exitCode: 143 }), lookup)).toBeNull();
    expect(toNotification(stateEvent({ state: 'running' }, 'creating'), lookup)).toBeNull();
  });

  it('`failed` carries the error code and message', () => {
    const n = toNotification(stateEvent({ state: 'failed', error: { code: 'IMAGE_NOT_FOUND', message: 'no image x' } }), lookup);
    expect(n).toMatchObject({ kind: 'failed', message: 'failed: IMAGE_NOT_FOUND: no image x' });
  });

  it('waiting-input and stuck, with the hook message and the project and agent looked up', () => {
    const n = toNotification(activityEvent({ state: 'waiting-input', reason: 'hook:Notification: Claude needs your permission to use Bash' }), lookup);
    expect(n).toEqual({
      kind: 'waiting-input',
      session: { id: 's1', name: 'fixer', project: 'web', agent: 'claude' },
      message: 'waiting for input: Claude needs your permission to use Bash',
      ts: TS,
    });
    expect(toNotification(activityEvent({ state: 'waiting-input', reason: 'hook:Notification' }), lookup)?.message).toBe('waiting for input');
    expect(toNotification(activityEvent({ state: 'stuck', reason: 'no output for 10m' }), lookup)).toMatchObject({ kind: 'stuck', message: 'stuck: no output for 10m' });
    expect(toNotification(activityEvent({ state: 'stuck', reason: null }), lookup)?.message).toBe('stuck');
    for (const state of ['working', 'idle', 'starting', 'exited'] as const) expect(toNotification(activityEvent({ state }), lookup)).toBeNull();
  });

  it('a stuck agent whose onStuck is none is not notified; notify and restart are, and none still tells of waiting-input', () => {
    const withPolicy = (onStuck: 'restart' | 'notify' | 'none') => () => ({ name: 'fixer', project: 'web', agent: 'claude', onStuck });
    expect(toNotification(activityEvent({ state: 'stuck', reason: 'quiet' }), withPolicy('none'))).toBeNull();
    expect(toNotification(activityEvent({ state: 'stuck', reason: 'quiet' }), withPolicy('notify'))?.kind).toBe('stuck');
    expect(toNotification(activityEvent({ state: 'stuck', reason: 'quiet' }), withPolicy('restart'))?.kind).toBe('stuck');
    expect(toNotification(activityEvent({ state: 'waiting-input' }), withPolicy('none'))?.kind).toBe('waiting-input');
  });

  it('a session the store no longer has still gets its notification', () => {
    const n = toNotification(activityEvent({ state: 'waiting-input' }, 'gone'), lookup);
    expect(n?.session).toEqual({ id: 'gone', name: 'fixer', project: '', agent: '' });
  });

  it('BUDGET_EXCEEDED is `budget`', () => {
    expect(toNotification(budgetEvent(), lookup)).toMatchObject({ kind: 'budget', message: 'BUDGET_EXCEEDED: used 1200 of its budget of 1000 tokens' });
  });

  it('a long message is cut', () => {
    const n = toNotification(activityEvent({ state: 'waiting-input', reason: `hook:Notification: ${'x'.repeat(2000)}` }), lookup);
    expect(n!.message.length).toBe(500);
  });

  it('other events are nothing, its own notification included', () => {
    const bus = new EventBus();
    const own = bus.publish('notification', { id: 'n', kind: 'exited', session: { id: 's1', name: 'fixer', project: 'web', agent: 'claude' }, message: 'm', ts: TS });
    expect(toNotification(own, lookup)).toBeNull();
    expect(toNotification(bus.publish('daemon.started', { version: '1', pid: 1 }), lookup)).toBeNull();
  });
});

function harness() {
  const bus = new EventBus();
  const shown: Notification[] = [];
  const posted: Notification[] = [];
  const desktop: DesktopNotifier = { command: 'notify-send', notify: (n) => void shown.push(n) };
  const webhook = { push: (n: Notification) => void posted.push(n), start: async () => {} } as unknown as WebhookQueue;
  let next = 0;
  const notifier = new Notifier({ bus, lookup, desktop, webhooks: [webhook], log, newId: () => `n${++next}` });
  const events: BerthEvent[] = [];
  bus.subscribe((e) => void events.push(e));
  return { bus, notifier, shown, posted, events };
}

const flush = () => new Promise((r) => setImmediate(r));

describe('Notifier', () => {
  it('publishes each notification on the bus after its cause, shows it and queues it for the webhooks', async () => {
    const { bus, notifier, shown, posted, events } = harness();
    const ctl = new AbortController();
    const done = notifier.start(ctl.signal);
    bus.publish('session.state', { session: session({ state: 'exited', exitCode: 3 }), previous: 'running' });
    bus.publish('session.state', { session: session({ state: 'exited', exitCode: 0 }), previous: 'running' });
    await flush();
    expect(events.map((e) => e.type)).toEqual(['session.state', 'session.state', 'notification']);
    const n = events[2]!.data as Notification;
    expect(n).toMatchObject({ id: 'n1', kind: 'exited', session: { name: 'fixer' } });
    expect(shown).toEqual([n]);
    expect(posted).toEqual([n]);
    ctl.abort();
    await done;
    bus.publish('session.state', { session: session({ state: 'failed' }), previous: 'running' });
    await flush();
    expect(posted).toHaveLength(1);
  });

  it('reports a budget once per session and budget, again after the budget changed', async () => {
    const { notifier, posted } = harness();
    notifier.handle(budgetEvent(1000, 1200));
    notifier.handle(budgetEvent(1000, 1300));
    expect(posted).toHaveLength(1);
    notifier.handle(budgetEvent(5000, 5100));
    expect(posted).toHaveLength(2);
    notifier.handle({ seq: 2, ts: TS, type: 'session.removed', data: { id: 's1', name: 'fixer' } });
    notifier.handle(budgetEvent(5000, 5200));
    expect(posted).toHaveLength(3);
  });

  it('a failing lookup or sink is logged, never thrown at the bus', () => {
    const bus = new EventBus();
    const notifier = new Notifier({
      bus,
      lookup: () => {
        throw new Error('database closed');
      },
      desktop: null,
      webhooks: [],
      log,
    });
    expect(() => notifier.handle(budgetEvent())).not.toThrow();
  });

  it('start() resolves when aborted, at once when already aborted', async () => {
    const { notifier } = harness();
    const ctl = new AbortController();
    ctl.abort();
    await notifier.start(ctl.signal);
  });
});
