import { describe, expect, it } from 'vitest';
import type { SessionActivity } from '@berth/client-sdk/protocol';
import { isStuck, lastSign } from './stuck.js';

const T0 = Date.parse('2026-12-01T10:00:00.000Z');
const at = (sec: number) => new Date(T0 + sec * 1000).toISOString();
const act = (state: SessionActivity['state']): SessionActivity => ({ state, since: at(0), reason: null });

describe('stuck', () => {
  it('takes the newest sign of work, whatever it was', () => {
    expect(lastSign({ startedAt: at(0), lastOutputAt: at(5), lastFileChangeAt: at(9), lastHookAt: null })).toBe(T0 + 9000);
    expect(lastSign({ startedAt: null })).toBeNaN();
  });

  it('is stuck only after the whole timeout without any sign, and only with CPU measured', () => {
    const signs = { startedAt: at(0), lastOutputAt: at(10) };
    expect(isStuck(null, signs, T0 + 69_000, 60_000, true)).toBe(false);
    expect(isStuck(null, signs, T0 + 70_000, 60_000, true)).toBe(true);
    expect(isStuck(act('working'), signs, T0 + 70_000, 60_000, true)).toBe(true);
    // Right after a berthd restart, one CPU sample: not enough to call anyone stuck.
    expect(isStuck(null, signs, T0 + 70_000, 60_000, false)).toBe(false);
    // A file written or a hook late enough keeps it working.
    expect(isStuck(null, { ...signs, lastFileChangeAt: at(40) }, T0 + 70_000, 60_000, true)).toBe(false);
    expect(isStuck(null, { ...signs, lastHookAt: at(11) }, T0 + 70_000, 60_000, true)).toBe(false);
  });

  it('never calls an agent stuck that waits for a person, or is stuck already', () => {
    const old = { startedAt: at(0) };
    for (const state of ['waiting-input', 'idle', 'stuck'] as const) expect(isStuck(act(state), old, T0 + 10 * 3600_000, 60_000, true)).toBe(false);
  });
});
