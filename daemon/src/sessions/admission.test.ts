import { describe, expect, it } from 'vitest';
import { autoMaxRunning } from './admission.js';

const GiB = 1024 ** 3;

describe('autoMaxRunning', () => {
  it('is what memory holds (90%) or four agents a core, whichever is fewer, and at least one', () => {
    expect(autoMaxRunning(4 * GiB, 2, { memory: 24 * GiB, cpus: 2 })).toBe(4); // cpu: 2 × 4 / 2
    expect(autoMaxRunning(4 * GiB, 1, { memory: 24 * GiB, cpus: 16 })).toBe(5); // memory: 21.6 / 4
    expect(autoMaxRunning(512 * 1024 ** 2, 0.5, { memory: 64 * GiB, cpus: 32 })).toBe(115);
    expect(autoMaxRunning(64 * GiB, 2, { memory: 8 * GiB, cpus: 1 })).toBe(1);
  });
});
