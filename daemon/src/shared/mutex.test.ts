import { describe, expect, it } from 'vitest';
import { KeyedMutex } from './mutex.js';

const tick = () => new Promise((r) => setImmediate(r));

describe('KeyedMutex', () => {
  it('runs the work of one key one at a time, in call order, and other keys alongside', async () => {
    const m = new KeyedMutex();
    const log: string[] = [];
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const a1 = m.run('a', async () => {
      log.push('a1 start');
      await gate;
      log.push('a1 end');
      return 1;
    });
    const a2 = m.run('a', async () => {
      log.push('a2');
      return 2;
    });
    const b = m.run('b', async () => {
      log.push('b');
      return 3;
    });
    await tick();
    expect(log).toEqual(['a1 start', 'b']);
    release();
    expect(await Promise.all([a1, a2, b])).toEqual([1, 2, 3]);
    expect(log).toEqual(['a1 start', 'b', 'a1 end', 'a2']);
  });

  it('a failure rejects its own caller only; the next in line still runs', async () => {
    const m = new KeyedMutex();
    const bad = m.run('k', async () => {
      throw new Error('boom');
    });
    const good = m.run('k', async () => 'ok');
    await expect(bad).rejects.toThrow('boom');
    expect(await good).toBe('ok');
  });

  it('forgets a key once its lane is empty', async () => {
    const m = new KeyedMutex();
    await m.run('k', async () => null);
    await tick();
    expect((m as unknown as { tails: Map<string, unknown> }).tails.size).toBe(0);
  });
});
