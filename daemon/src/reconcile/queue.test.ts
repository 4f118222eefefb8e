import { describe, expect, it } from 'vitest';
import { FakeClock } from '../../test/helpers/clock.js';
import { WorkQueue } from './queue.js';

const flush = () => new Promise((r) => setImmediate(r));

describe('WorkQueue', () => {
  it('hands out each key once, in order, however often it was added', async () => {
    const q = new WorkQueue(new FakeClock());
    for (const k of ['a', 'b', 'a', 'c', 'b']) q.add(k);
    const got = [await q.get(), await q.get(), await q.get()];
    expect(got).toEqual(['a', 'b', 'c']);
    const next = q.get();
    let settled = false;
    void next.then(() => (settled = true));
    await flush();
    expect(settled).toBe(false);
    q.stop();
    expect(await next).toBeNull();
  });

  it('never gives a key to two workers: one added while processed comes back once done', async () => {
    const q = new WorkQueue(new FakeClock());
    q.add('a');
    expect(await q.get()).toBe('a');
    q.add('a');
    q.add('a');
    const second = q.get();
    let got: string | null | undefined;
    void second.then((k) => (got = k));
    await flush();
    expect(got).toBeUndefined();
    q.done('a');
    expect(await second).toBe('a');
    q.done('a');
    q.stop();
    expect(await q.get()).toBeNull();
  });

  it('wakes a waiting worker on add', async () => {
    const q = new WorkQueue(new FakeClock());
    const w = q.get();
    q.add('x');
    expect(await w).toBe('x');
  });

  it('addAfter waits for the clock; the earlier of two delays wins; stop cancels', async () => {
    const clock = new FakeClock(0);
    const q = new WorkQueue(clock);
    q.addAfter('a', 10_000);
    q.addAfter('a', 5_000);
    q.addAfter('a', 20_000);
    const w = q.get();
    let got: string | null | undefined;
    void w.then((k) => (got = k));
    clock.advance(4_999);
    await flush();
    expect(got).toBeUndefined();
    clock.advance(1);
    await flush();
    expect(got).toBe('a');
    q.done('a');
    clock.advance(30_000);
    await flush();
    q.addAfter('b', 1_000);
    q.stop();
    clock.advance(2_000);
    await flush();
    expect(await q.get()).toBeNull();
  });

  it('addAfter with no delay is add', async () => {
    const q = new WorkQueue(new FakeClock());
    q.addAfter('now', 0);
    expect(await q.get()).toBe('now');
  });
});
