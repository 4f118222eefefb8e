import { createTask } from 'node-cron';
import { describe, expect, it } from 'vitest';
import { BerthError } from '@berth/client-sdk/protocol';
import { assertTimeZone, lastRunBetween, nextRun, parseCron } from './cron.js';

const next = (expr: string, tz: string, after: string) => nextRun(parseCron(expr), tz, new Date(after))?.toISOString() ?? null;

function code(f: () => unknown): string | undefined {
  try {
    f();
  } catch (err) {
    return err instanceof BerthError ? err.code : `not a BerthError: ${String(err)}`;
  }
  return undefined;
}

describe('parseCron', () => {
  it('refuses what it cannot run, naming the field', () => {
    expect(code(() => parseCron('bogus'))).toBe('SCHEDULE_CRON_INVALID');
    expect(code(() => parseCron('61 * * * *'))).toBe('SCHEDULE_CRON_INVALID');
    expect(code(() => parseCron('0 0 31 2 *'))).toBe('SCHEDULE_CRON_INVALID');
    expect(code(() => parseCron('* * * * * *'))).toBe('SCHEDULE_CRON_INVALID');
    expect(code(() => parseCron(''))).toBe('SCHEDULE_CRON_INVALID');
    expect(code(() => parseCron('x'.repeat(500)))).toBe('SCHEDULE_CRON_INVALID');
    try {
      parseCron('61 * * * *');
    } catch (err) {
      expect((err as BerthError).details).toMatchObject({ field: 'minute' });
    }
    expect(code(() => parseCron('0 3 * * 1-5'))).toBeUndefined();
    expect(code(() => parseCron('@daily'))).toBeUndefined();
    expect(code(() => parseCron('0 0 * jan,feb sun'))).toBeUndefined();
  });

  it('knows time zones by their IANA names', () => {
    expect(code(() => assertTimeZone('Europe/Berlin'))).toBeUndefined();
    expect(code(() => assertTimeZone('UTC'))).toBeUndefined();
    expect(code(() => assertTimeZone('Mars/Olympus'))).toBe('SCHEDULE_TZ_INVALID');
    expect(code(() => assertTimeZone(''))).toBe('SCHEDULE_TZ_INVALID');
  });
});

describe('nextRun', () => {
  it('is strictly after the given time, at whole minutes', () => {
    expect(next('* * * * *', 'UTC', '2026-03-02T10:00:00.000Z')).toBe('2026-03-02T10:01:00.000Z');
    expect(next('* * * * *', 'UTC', '2026-03-02T10:00:30.000Z')).toBe('2026-03-02T10:01:00.000Z');
    expect(next('*/15 * * * *', 'UTC', '2026-03-02T10:14:59.000Z')).toBe('2026-03-02T10:15:00.000Z');
  });

  it('reads days of the week (Monday to Friday skips the weekend)', () => {
    // 2026-03-06 is a Friday.
    expect(next('0 3 * * 1-5', 'UTC', '2026-03-06T03:00:00Z')).toBe('2026-03-09T03:00:00.000Z');
    expect(next('0 3 * * sun', 'UTC', '2026-03-06T03:00:00Z')).toBe('2026-03-08T03:00:00.000Z');
    expect(next('0 3 * * 7', 'UTC', '2026-03-06T03:00:00Z')).toBe('2026-03-08T03:00:00.000Z');
  });

  it('reads the expression in the time zone given', () => {
    // Berlin is UTC+1 in winter, UTC+2 in summer.
    expect(next('0 3 * * *', 'Europe/Berlin', '2026-01-10T00:00:00Z')).toBe('2026-01-10T02:00:00.000Z');
    expect(next('0 3 * * *', 'Europe/Berlin', '2026-07-10T00:00:00Z')).toBe('2026-07-10T01:00:00.000Z');
    expect(next('30 9 * * *', 'America/New_York', '2026-01-10T00:00:00Z')).toBe('2026-01-10T14:30:00.000Z');
    expect(next('0 0 * * *', 'Asia/Kolkata', '2026-01-10T00:00:00Z')).toBe('2026-01-10T18:30:00.000Z');
  });

  it('skips a wall time that DST skips, and runs a repeated one once', () => {
    // Europe/Berlin: 2026-03-29 02:00 -> 03:00 (02:30 does not exist); 2026-10-25 03:00 -> 02:00 (02:30 twice).
    expect(next('30 2 * * *', 'Europe/Berlin', '2026-03-28T12:00:00Z')).toBe('2026-03-30T00:30:00.000Z');
    const first = next('30 2 * * *', 'Europe/Berlin', '2026-10-24T12:00:00Z');
    expect(first).toBe('2026-10-25T00:30:00.000Z');
    expect(next('30 2 * * *', 'Europe/Berlin', first!)).toBe('2026-10-26T01:30:00.000Z');
    // Hourly across the change: every wall-clock hour once.
    const runs: string[] = [];
    let t = '2026-10-24T23:30:00Z';
    for (let i = 0; i < 4; i++) runs.push((t = next('0 * * * *', 'Europe/Berlin', t)!));
    // 01:00Z is 02:00 again (CET after CEST): that wall time ran at 00:00Z.
    expect(runs).toEqual(['2026-10-25T00:00:00.000Z', '2026-10-25T02:00:00.000Z', '2026-10-25T03:00:00.000Z', '2026-10-25T04:00:00.000Z']);
  });

  it('knows the last day of the month, the last and the n-th weekday, and leap years', () => {
    expect(next('0 0 L * *', 'UTC', '2026-02-10T00:00:00Z')).toBe('2026-02-28T00:00:00.000Z');
    expect(next('0 0 L * *', 'UTC', '2028-02-10T00:00:00Z')).toBe('2028-02-29T00:00:00.000Z');
    expect(next('0 0 * * 5L', 'UTC', '2026-03-01T00:00:00Z')).toBe('2026-03-27T00:00:00.000Z');
    expect(next('0 0 * * 1#2', 'UTC', '2026-03-01T00:00:00Z')).toBe('2026-03-09T00:00:00.000Z');
    expect(next('0 0 29 2 *', 'UTC', '2026-03-01T00:00:00Z')).toBe('2028-02-29T00:00:00.000Z');
  });

  it('agrees with node-cron on which minutes match', () => {
    const cases: [string, string][] = [
      ['0 3 * * 1-5', 'Europe/Berlin'],
      ['*/7 1-4,22 * * *', 'America/New_York'],
      ['15 12 1,15 * mon', 'UTC'],
      ['0 */6 * jan-mar,oct *', 'Australia/Sydney'],
    ];
    for (const [expr, tz] of cases) {
      const task = createTask(expr, () => {}, { timezone: tz });
      try {
        let t = new Date('2026-01-01T00:00:00Z');
        for (let i = 0; i < 40; i++) {
          const n = nextRun(parseCron(expr), tz, t)!;
          expect(task.match(n), `${expr} ${tz} ${n.toISOString()}`).toBe(true);
          // No minute in between matches.
          for (let m = t.getTime() + 60_000; m < n.getTime() && m < t.getTime() + 3 * 86_400_000; m += 60_000) {
            if (task.match(new Date(m))) expect.fail(`${expr} ${tz}: node-cron matches ${new Date(m).toISOString()}, before ${n.toISOString()}`);
          }
          t = n;
        }
      } finally {
        void task.destroy();
      }
    }
  });
});

describe('lastRunBetween', () => {
  const spec = parseCron('*/10 * * * *');
  it('finds the latest due run and whether others were passed over', () => {
    expect(lastRunBetween(spec, 'UTC', new Date('2026-03-02T10:00:00Z'), new Date('2026-03-02T10:09:00Z'), 86_400_000)).toBeNull();
    expect(lastRunBetween(spec, 'UTC', new Date('2026-03-02T10:00:00Z'), new Date('2026-03-02T10:10:00Z'), 86_400_000)).toEqual({ at: new Date('2026-03-02T10:10:00Z'), earlier: false });
    expect(lastRunBetween(spec, 'UTC', new Date('2026-03-02T10:00:00Z'), new Date('2026-03-02T10:35:00Z'), 86_400_000)).toEqual({ at: new Date('2026-03-02T10:30:00Z'), earlier: true });
  });
  it('looks back no further than the horizon', () => {
    const r = lastRunBetween(spec, 'UTC', new Date('2020-01-01T00:00:00Z'), new Date('2026-03-02T10:35:00Z'), 3_600_000);
    expect(r).toEqual({ at: new Date('2026-03-02T10:30:00Z'), earlier: true });
  });
});
