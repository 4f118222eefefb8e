import pino from 'pino';
import { describe, expect, it } from 'vitest';
import type { Notification, Session } from '@berth/client-sdk/protocol';
import { FakeClock } from '../../test/helpers/clock.js';
import { EventBus } from '../events/bus.js';
import { Notifier } from './notifier.js';
import { WebhookQueue, type Post } from './webhooks.js';

const log = pino({ level: 'silent' });
const settle = async (rounds = 20) => {
  for (let i = 0; i < rounds; i++) await new Promise((r) => setImmediate(r));
};

const exited = (n: number) =>
  ({
    id: `s${n}`,
    name: `w${n}`,
    project: 'web',
    agent: 'a',
    state: 'exited',
    exitCode: 3,
    error: null,
  }) as unknown as Session;

describe('Notifier.setWebhooks (notifyWebhooks reloaded live)', () => {
  it('a kept webhook keeps its queue, a dropped one gets nothing more, a new one gets the next notification', async () => {
    const clock = new FakeClock();
    const sent: [string, string][] = [];
    const post: Post = async (url, body) => {
      sent.push([url, (JSON.parse(body) as Notification).session.id]);
      return 200;
    };
    const make = (url: string) => new WebhookQueue({ url }, { clock, log, post });
    const bus = new EventBus();
    const keep = make('http://h/keep');
    const notifier = new Notifier({ bus, lookup: () => undefined, desktop: null, webhooks: [keep, make('http://h/drop')], log });
    const ctl = new AbortController();
    const done = notifier.start(ctl.signal);
    bus.publish('session.state', { session: exited(1), previous: 'running' });
    await settle();
    expect(sent.sort()).toEqual([['http://h/drop', 's1'], ['http://h/keep', 's1']]);

    const again = make('http://h/keep');
    notifier.setWebhooks([again, make('http://h/new')]);
    bus.publish('session.state', { session: exited(2), previous: 'running' });
    await settle();
    expect(sent.filter(([, s]) => s === 's2').sort()).toEqual([['http://h/keep', 's2'], ['http://h/new', 's2']]);
    // The same url and events: the running queue was kept, not the new object.
    expect(again.pending).toBe(0);
    ctl.abort();
    await done;
  });
});
