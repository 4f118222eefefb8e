import { describe, expect, it } from 'vitest';
import { FairQueue } from './fair-queue.js';

const settle = async (rounds = 20) => {
  for (let i = 0; i < rounds; i++) await new Promise((r) => setImmediate(r));
};

describe('FairQueue.setLimit (modelMaxInflight reloaded live)', () => {
  it('a higher limit admits waiters at once; a lower one lets holders finish and admits none over it', async () => {
    const q = new FairQueue(1);
    const releases: (() => void)[] = [];
    const got: string[] = [];
    const take = (tag: string) => q.acquire(tag).then((r) => (got.push(tag), releases.push(r)));
    void take('a');
    void take('b');
    void take('c');
    await settle();
    expect(got).toEqual(['a']);
    q.setLimit(3);
    await settle();
    expect(got).toEqual(['a', 'b', 'c']);
    q.setLimit(1);
    void take('d');
    releases.shift()!();
    await settle();
    expect(got).toEqual(['a', 'b', 'c']);
    releases.shift()!();
    releases.shift()!();
    await settle();
    expect(got).toEqual(['a', 'b', 'c', 'd']);
    expect(q.limit).toBe(1);
  });
});
