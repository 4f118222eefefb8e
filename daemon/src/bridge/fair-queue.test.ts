import { describe, expect, it } from 'vitest';
import { FairQueue } from './fair-queue.js';

const tick = () => new Promise((r) => setImmediate(r));

describe('FairQueue', () => {
  it('never has more than the limit out, and serves keys in turn', async () => {
    const q = new FairQueue(2);
    const order: string[] = [];
    const releases: (() => void)[] = [];
    const take = (key: string, tag: string) =>
      q.acquire(key).then((release) => {
        order.push(tag);
        releases.push(release);
      });
    // a floods first, b and c ask once each afterwards.
    const all = [take('a', 'a1'), take('a', 'a2'), take('a', 'a3'), take('a', 'a4'), take('b', 'b1'), take('c', 'c1'), take('a', 'a5')];
    await tick();
    expect(order).toEqual(['a1', 'a2']);
    expect(q.inFlight).toBe(2);
    expect(q.queued).toBe(5);
    while (releases.length) {
      releases.shift()!();
      await tick();
      expect(q.inFlight).toBeLessThanOrEqual(2);
    }
    await Promise.all(all);
    // After the first two, a, b and c take turns: b and c do not wait behind all of a's.
    expect(order).toEqual(['a1', 'a2', 'a3', 'b1', 'c1', 'a4', 'a5']);
    expect(q.inFlight).toBe(0);
  });

  it('a waiter that gives up leaves the queue; releasing twice frees one slot', async () => {
    const q = new FairQueue(1);
    const first = await q.acquire('a');
    const ac = new AbortController();
    const gaveUp = q.acquire('b', ac.signal);
    const third = q.acquire('c');
    ac.abort(new Error('client went away'));
    await expect(gaveUp).rejects.toThrow('client went away');
    first();
    first();
    const release = await third;
    expect(q.inFlight).toBe(1);
    release();
    expect(q.inFlight).toBe(0);
  });
});
