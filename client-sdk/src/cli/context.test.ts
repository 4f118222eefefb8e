import { describe, expect, it } from 'vitest';
import { parseDurationSec, parseTimeArg } from './context.js';

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

describe('parseTimeArg', () => {
  const now = Date.parse('2026-12-02T12:00:00.000Z');
  it('takes durations back from now, Unix seconds and dates', () => {
    expect(parseTimeArg('10m', '--since', now)).toBe('2026-12-02T11:50:00.000Z');
    expect(parseTimeArg('1h30m', '--since', now)).toBe('2026-12-02T10:30:00.000Z');
    expect(parseTimeArg('2d', '--since', now)).toBe('2026-11-30T12:00:00.000Z');
    expect(parseTimeArg('1700000000', '--since', now)).toBe('2023-11-14T22:13:20.000Z');
    expect(parseTimeArg('2026-12-01T08:00:00Z', '--until', now)).toBe('2026-12-01T08:00:00.000Z');
    expect(parseTimeArg('2026-12-01T08:00:00+02:00', '--until', now)).toBe('2026-12-01T06:00:00.000Z');
  });
  it('refuses anything else in flag terms', () => {
    for (const bad of ['', 'yesterday', '10x', '-5m', '2026-13-45', 'm10']) {
      expect(() => parseTimeArg(bad, '--since', now)).toThrow(/--since takes a time like 10m/);
    }
  });
});
