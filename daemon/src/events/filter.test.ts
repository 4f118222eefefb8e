import { describe, expect, it } from 'vitest';
import { eventTypeFilterProblem, type BerthEvent } from '@berth/client-sdk/protocol';
import { EventBus } from './bus.js';
import { eventFilter } from './filter.js';

const session = (id: string, name: string, project: string) => ({ id, name, project }) as never;

describe('event filters', () => {
  const bus = new EventBus(1000, () => new Date(0), 'e1');
  const events: BerthEvent[] = [
    bus.publish('daemon.started', { version: 'x', pid: 1 }),
    bus.publish('project.added', { project: { name: 'web' } as never }),
    bus.publish('session.created', { session: session('aaaa00000001', 'web-1', 'web') }),
    bus.publish('session.activity', { id: 'aaaa00000001', name: 'web-1', activity: { state: 'working' } as never, previous: null }),
    bus.publish('session.created', { session: session('bbbb00000002', 'api-1', 'api') }),
    bus.publish('session.removed', { id: 'cccc00000003', name: 'web-2' }),
  ];
  const types = (f: Parameters<typeof eventFilter>[0], projectOf = (_: string): string | undefined => undefined) =>
    events.filter(eventFilter(f, projectOf)).map((e) => `${e.type}#${e.seq}`);

  it('types: exact names and prefixes; none given passes all', () => {
    expect(types({})).toHaveLength(6);
    expect(types({ types: ['session.*'] })).toEqual(['session.created#3', 'session.activity#4', 'session.created#5', 'session.removed#6']);
    expect(types({ types: ['daemon.started', 'session.removed'] })).toEqual(['daemon.started#1', 'session.removed#6']);
  });

  it('session by id or by a name not made yet; project through the session when the event lacks it', () => {
    expect(types({ session: { ref: 'web-1', id: 'aaaa00000001' } })).toEqual(['session.created#3', 'session.activity#4']);
    expect(types({ session: { ref: 'web-2', id: null } })).toEqual(['session.removed#6']);
    expect(types({ project: 'web' }, (id) => (id === 'cccc00000003' ? 'web' : undefined))).toEqual([
      'project.added#2',
      'session.created#3',
      'session.activity#4',
      'session.removed#6',
    ]);
  });

  it('refuses unknown types and prefixes of none', () => {
    expect(eventTypeFilterProblem(['session.*', 'notification'])).toBeNull();
    expect(eventTypeFilterProblem(['session.stat'])).toMatch(/unknown event type/);
    expect(eventTypeFilterProblem(['nope.*'])).toMatch(/unknown event type/);
  });

  it('the bus says its epoch and the oldest seq it still has', () => {
    const small = new EventBus(2, () => new Date(0), 'e2');
    expect([small.epoch, small.lastSeq, small.oldestSeq]).toEqual(['e2', 0, 1]);
    for (let i = 0; i < 3; i++) small.publish('image.removed', { name: `i${i}` });
    expect([small.lastSeq, small.oldestSeq]).toEqual([3, 2]);
    expect(new EventBus().epoch).not.toBe(new EventBus().epoch);
  });
});
