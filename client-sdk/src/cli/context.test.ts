import { describe, expect, it } from 'vitest';
import { parseDurationSec } from './context.js';

describe('parseDurationSec', () => {
  it('reads seconds, minutes, hours and days', () => {
    expect(parseDurationSec('90', '--within')).toBe(90);
    expect(parseDurationSec('90s', '--within')).toBe(90);
    expect(parseDurationSec('30m', '--within')).toBe(1800);
    expect(parseDurationSec('1.5h', '--within')).toBe(5400);
    expect(parseDurationSec('2d', '--within')).toBe(172800);
  });

  it('refuses what is not a positive duration, naming the flag', () => {
    for (const bad of ['', '0', '0s', '-5m', '10 minutes', 'm', '1e3']) {
      expect(() => parseDurationSec(bad, '--within'), bad).toThrow(expect.objectContaining({ code: 'INVALID_PARAMS', message: expect.stringContaining('--within') }));
    }
  });
});
