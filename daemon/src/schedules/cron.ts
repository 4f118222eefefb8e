import { BerthError } from '@berth/client-sdk/protocol';
import { validateDetailed } from 'node-cron';

/**
 * A cron expression, parsed by node-cron (its syntax, names, ranges, steps, L and n#k), for
 * computing run times ourselves: node-cron's own timers run on the real clock, and berth's
 * schedules must follow the injected one (tests move it; a clock that jumps is caught up on).
 */
export interface CronSpec {
  minutes: number[];
  hours: number[];
  months: Set<number>;
  /** Day of month: numbers, or 'L' (the last day). */
  days: (number | 'L')[];
  /** Day of week, 0 = Sunday: numbers, 'nL' (the last weekday n of the month), 'n#k' (the k-th). */
  weekdays: (number | string)[];
}

const MAX_LEN = 200;

/** Parses a five-field cron expression (or @daily ...); SCHEDULE_CRON_INVALID naming the field otherwise. */
export function parseCron(expr: string): CronSpec {
  const bad = (message: string, field = 'cron') => new BerthError('SCHEDULE_CRON_INVALID', message, { details: { field, cron: expr.slice(0, MAX_LEN) } });
  if (typeof expr !== 'string' || expr.length > MAX_LEN || !expr.trim()) throw bad(`invalid cron expression: give five fields (minute hour day-of-month month day-of-week)`);
  const trimmed = expr.trim();
  if (!trimmed.startsWith('@') && trimmed.split(/\s+/).length !== 5) {
    throw bad(`invalid cron expression ${JSON.stringify(trimmed)}: expected five fields (minute hour day-of-month month day-of-week), got ${trimmed.split(/\s+/).length}`);
  }
  let r: ReturnType<typeof validateDetailed>;
  try {
    r = validateDetailed(trimmed);
  } catch (err) {
    throw bad(`invalid cron expression ${JSON.stringify(trimmed)}: ${(err as Error).message}`);
  }
  if (!r.valid || !r.fields) {
    const e = r.errors[0];
    throw bad(`invalid cron expression ${JSON.stringify(trimmed)}: ${e ? `${e.field}: ${e.message}` : 'not understood'}`, e?.field ?? 'cron');
  }
  const f = r.fields;
  if (f.second.length !== 1 || f.second[0] !== 0) throw bad(`invalid cron expression ${JSON.stringify(trimmed)}: schedules run at whole minutes (no seconds field)`, 'second');
  for (const d of f.dayOfMonth) if (typeof d === 'string' && d !== 'L') throw bad(`invalid cron expression ${JSON.stringify(trimmed)}: day-of-month ${d} is not supported (numbers, ranges, steps and L are)`, 'dayOfMonth');
  for (const d of f.dayOfWeek) if (typeof d === 'string' && !/^[0-7](L|#[1-5])$/.test(d)) throw bad(`invalid cron expression ${JSON.stringify(trimmed)}: day-of-week ${d} is not supported`, 'dayOfWeek');
  return {
    minutes: [...f.minute].sort((a, b) => a - b),
    hours: [...f.hour].sort((a, b) => a - b),
    months: new Set(f.month),
    days: f.dayOfMonth as (number | 'L')[],
    weekdays: f.dayOfWeek,
  };
}

/** Throws SCHEDULE_TZ_INVALID unless `tz` is a time zone this Node knows (IANA names). */
export function assertTimeZone(tz: string): void {
  try {
    if (typeof tz !== 'string' || !tz || tz.length > 64) throw new RangeError('empty');
    new Intl.DateTimeFormat('en-US', { timeZone: tz });
  } catch {
    throw new BerthError('SCHEDULE_TZ_INVALID', `unknown time zone ${JSON.stringify(String(tz).slice(0, 64))}`, { details: { field: 'tz', tz: String(tz).slice(0, 64) } });
  }
}

const formatters = new Map<string, Intl.DateTimeFormat>();
function formatter(tz: string): Intl.DateTimeFormat {
  let f = formatters.get(tz);
  if (!f) {
    f = new Intl.DateTimeFormat('en-US', { timeZone: tz, hourCycle: 'h23', year: 'numeric', month: 'numeric', day: 'numeric', hour: 'numeric', minute: 'numeric', second: 'numeric' });
    formatters.set(tz, f);
  }
  return f;
}

interface Local {
  year: number;
  month: number;
  day: number;
  hour: number;
  minute: number;
}

function localOf(ms: number, tz: string): Local {
  const p: Record<string, number> = {};
  for (const part of formatter(tz).formatToParts(new Date(ms))) if (part.type !== 'literal') p[part.type] = Number(part.value);
  return { year: p.year!, month: p.month!, day: p.day!, hour: p.hour!, minute: p.minute! };
}

/** UTC offset of `tz` at instant `ms`, in ms (local = utc + offset). */
function offsetAt(ms: number, tz: string): number {
  const l = localOf(ms, tz);
  const asUtc = Date.UTC(l.year, l.month - 1, l.day, l.hour, l.minute);
  return asUtc - Math.floor(ms / 60_000) * 60_000;
}

/**
 * The instant a local wall time names in `tz`: the earlier one when it names two (the hour
 * repeated when clocks go back), null when it names none (the hour skipped when they go forward).
 */
export function localToInstant(l: Local, tz: string): number | null {
  const wall = Date.UTC(l.year, l.month - 1, l.day, l.hour, l.minute);
  const found: number[] = [];
  // The offsets around this wall time: before and after any change within a day of it.
  for (const probe of [wall - 86_400_000, wall + 86_400_000, wall]) {
    const t = wall - offsetAt(probe, tz);
    const back = localOf(t, tz);
    if (back.year === l.year && back.month === l.month && back.day === l.day && back.hour === l.hour && back.minute === l.minute && !found.includes(t)) found.push(t);
  }
  return found.length ? Math.min(...found) : null;
}

const daysIn = (year: number, month: number) => new Date(Date.UTC(year, month, 0)).getUTCDate();

function dayMatches(spec: CronSpec, year: number, month: number, day: number): boolean {
  if (!spec.months.has(month)) return false;
  const last = daysIn(year, month);
  if (!spec.days.some((d) => (d === 'L' ? day === last : d === day))) return false;
  const weekday = new Date(Date.UTC(year, month - 1, day)).getUTCDay();
  return spec.weekdays.some((w) => {
    if (typeof w === 'number') return w % 7 === weekday;
    const n = Number(w[0]) % 7;
    if (n !== weekday) return false;
    if (w[1] === 'L') return day + 7 > last;
    return Math.ceil(day / 7) === Number(w.slice(2));
  });
}

/** Days searched ahead before giving up (an expression like "0 0 29 2 1" may match once in years). */
const MAX_DAYS = 366 * 8;

/**
 * The first minute strictly after `after` that `spec` matches in `tz` (wall-clock time there), or
 * null when none comes within eight years. A wall time skipped by a DST change is skipped; one
 * repeated runs once, at its first occurrence. Day of month and day of week must both match
 * (node-cron's reading, not Vixie cron's "either").
 */
export function nextRun(spec: CronSpec, tz: string, after: Date): Date | null {
  const start = Math.floor(after.getTime() / 60_000) * 60_000 + 60_000;
  const s = localOf(start, tz);
  const startWall = Date.UTC(s.year, s.month - 1, s.day, s.hour, s.minute);
  // On the first day, wall times before the start's are before it too, unless the clocks went back
  // within the last hours (then those up to 3 h earlier are looked at one by one).
  const steady = offsetAt(start - 3 * 3_600_000, tz) === offsetAt(start, tz);
  const floor = steady ? startWall : startWall - 3 * 3_600_000;
  let { year, month, day } = s;
  for (let i = 0; i < MAX_DAYS; i++) {
    if (dayMatches(spec, year, month, day)) {
      for (const hour of spec.hours) {
        if (i === 0 && Date.UTC(year, month - 1, day, hour, 59) < floor) continue;
        for (const minute of spec.minutes) {
          if (i === 0 && Date.UTC(year, month - 1, day, hour, minute) < floor) continue;
          const t = localToInstant({ year, month, day, hour, minute }, tz);
          if (t !== null && t >= start) return new Date(t);
        }
      }
    }
    const d = new Date(Date.UTC(year, month - 1, day + 1));
    year = d.getUTCFullYear();
    month = d.getUTCMonth() + 1;
    day = d.getUTCDate();
  }
  return null;
}

/**
 * The latest run time in (`after`, `now`], or null when there is none; `earlier` says whether
 * runs before it (after `after`) were passed over. Looks back an hour, then a day, then at most
 * `horizonMs` before `now`: after a long downtime an every-minute schedule walks 60 times, not
 * 10,000. A time older than the horizon is past any deadline anyway and is not reported.
 */
export function lastRunBetween(spec: CronSpec, tz: string, after: Date, now: Date, horizonMs: number): { at: Date; earlier: boolean } | null {
  const end = now.getTime();
  for (const span of [3_600_000, 86_400_000, horizonMs]) {
    const lo = Math.max(after.getTime(), end - Math.min(span, horizonMs));
    let found: Date | null = null;
    for (let t = nextRun(spec, tz, new Date(lo)); t && t.getTime() <= end; t = nextRun(spec, tz, t)) found = t;
    if (found) return { at: found, earlier: nextRun(spec, tz, after)!.getTime() < found.getTime() };
    if (lo === after.getTime() || span >= horizonMs) return null;
  }
  return null;
}
