import { appendFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { compileLogGrep, tsKey, type LogLine } from '@berth/client-sdk/protocol';
import { systemClock } from '../shared/clock.js';
import { LogReader } from './reader.js';

const ID = 'abcdef012345';
let root: string;
let dir: string;

beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), 'berth-logrd-'));
  dir = join(root, ID);
  mkdirSync(dir);
});
afterEach(() => rmSync(root, { recursive: true, force: true }));

/** Line i of a synthetic session: one a second from 08:00:00, with varying fraction digits. */
function rec(i: number, extra: Partial<LogLine> = {}): LogLine {
  const t = new Date(Date.UTC(2026, 11, 2, 8, 0, 0) + i * 1000).toISOString().slice(0, 19);
  const frac = ['', '.5', '.123456789', '.1'][i % 4];
  return { ts: `${t}${frac}Z`, stream: i % 3 === 0 ? 'stderr' : 'stdout', line: `line ${i}`, ...extra };
}
const text = (from: number, to: number) => Array.from({ length: to - from }, (_, k) => `${JSON.stringify(rec(from + k))}\n`).join('');
const seg = (n: number, body: string, kind: 'plain' | 'gz' | 'both' = 'plain') => {
  const name = join(dir, `seg-${String(n).padStart(6, '0')}.jsonl`);
  if (kind !== 'gz') writeFileSync(name, body);
  if (kind !== 'plain') writeFileSync(`${name}.gz`, gzipSync(body));
};
const reader = () => new LogReader({ root, clock: systemClock, pollMs: 20 });
async function all(it: AsyncIterable<LogLine>): Promise<string[]> {
  const out: string[] = [];
  for await (const l of it) out.push(l.line);
  return out;
}
const range = (from: number, to: number) => Array.from({ length: to - from }, (_, k) => `line ${from + k}`);

describe('LogReader', () => {
  it('reads segments in order across .gz and .jsonl, the .jsonl when both exist', async () => {
    seg(1, text(0, 100), 'gz');
    seg(2, text(100, 200), 'both');
    seg(10, text(200, 250), 'gz');
    seg(11, text(250, 300));
    expect(await all(reader().lines(ID))).toEqual(range(0, 300));
  });

  it('a session without a store reads as nothing', async () => {
    expect(await reader().has('ffffffffffff')).toBe(false);
    expect(await all(reader().lines('ffffffffffff'))).toEqual([]);
    expect(() => reader().dir('../etc')).toThrow(expect.objectContaining({ code: 'INVALID_PARAMS' }));
  });

  it('skips a torn last line and garbage, and keeps partial pieces and berth markers', async () => {
    const piece = JSON.stringify({ ...rec(2), line: 'first half', partial: true });
    const marker = JSON.stringify({ ts: rec(3).ts, stream: 'berth', line: 'berth: 5 lines dropped (could not keep up)', dropped: 5 });
    seg(1, `${JSON.stringify(rec(0))}\nnot json\n{"ts":1}\n${JSON.stringify(rec(1))}\n${piece}\n${marker}\n${JSON.stringify(rec(4)).slice(0, 20)}`);
    const got: LogLine[] = [];
    for await (const l of reader().lines(ID)) got.push(l);
    expect(got.map((l) => l.line)).toEqual(['line 0', 'line 1', 'first half', 'berth: 5 lines dropped (could not keep up)']);
    expect(got[2]!.partial).toBe(true);
    expect(got[3]).toMatchObject({ stream: 'berth', dropped: 5 });
  });

  it('reads lines longer than a chunk and multi-byte text split across chunks', async () => {
    const long = 'é'.repeat(200_000);
    seg(1, `${JSON.stringify({ ...rec(0), line: long })}\n${text(1, 3)}`, 'gz');
    seg(2, `${JSON.stringify({ ...rec(3), line: long })}\n${text(4, 5)}`);
    const got = await all(reader().lines(ID));
    expect(got).toEqual([long, 'line 1', 'line 2', long, 'line 4']);
  });

  it('tail counts back across segments', async () => {
    seg(1, text(0, 100), 'gz');
    seg(2, text(100, 110), 'gz');
    seg(3, text(110, 115));
    expect(await all(reader().lines(ID, { tail: 3 }))).toEqual(range(112, 115));
    expect(await all(reader().lines(ID, { tail: 20 }))).toEqual(range(95, 115));
    expect(await all(reader().lines(ID, { tail: 1000 }))).toEqual(range(0, 115));
    expect(await all(reader().lines(ID, { tail: 0 }))).toEqual([]);
    // Filters first, then the last N of what passes.
    expect(await all(reader().lines(ID, { tail: 2, grep: /^line 9\d$/ }))).toEqual(['line 98', 'line 99']);
  });

  it('since and until compare times whatever their fraction digits', async () => {
    seg(1, text(0, 10), 'gz');
    seg(2, text(10, 20));
    const since = rec(5).ts.replace(/\..*Z$/, 'Z'); // 08:00:05Z: line 5 is at 08:00:05.123456789
    const until = new Date(Date.UTC(2026, 11, 2, 8, 0, 12, 500)).toISOString(); // line 12 is at .000 (no fraction)
    expect(await all(reader().lines(ID, { since, until }))).toEqual(range(5, 13));
    expect(await all(reader().lines(ID, { since: '2026-12-02T08:00:18.2Z' }))).toEqual(['line 19']);
    expect(tsKey('2026-12-02T08:00:00Z')).toBe('2026-12-02T08:00:00.000000000Z');
    expect(tsKey('2026-12-02T09:00:00.5+01:00')).toBe('2026-12-02T08:00:00.500000000Z');
  });

  it('since and until across many segments: the boundaries hold, with tail too', async () => {
    for (let n = 0; n < 8; n++) seg(n + 1, text(n * 10, n * 10 + 10), n < 7 ? 'gz' : 'plain');
    const at = (i: number) => rec(i).ts;
    expect(await all(reader().lines(ID, { since: at(30), until: at(49) }))).toEqual(range(30, 50));
    expect(await all(reader().lines(ID, { since: at(29), until: at(50) }))).toEqual(range(29, 51));
    expect(await all(reader().lines(ID, { since: at(35), until: at(64), tail: 3 }))).toEqual(range(62, 65));
    expect(await all(reader().lines(ID, { since: at(75) }))).toEqual(range(75, 80));
    expect(await all(reader().lines(ID, { until: at(4) }))).toEqual(range(0, 5));
    expect(await all(reader().lines(ID, { since: '2027-01-01T00:00:00Z' }))).toEqual([]);
    expect(await all(reader().lines(ID, { until: '2020-01-01T00:00:00Z' }))).toEqual([]);
  });

  it('grep takes a regular expression; an invalid or overlong one is LOG_FILTER_INVALID', async () => {
    seg(1, text(0, 30));
    expect(await all(reader().lines(ID, { grep: compileLogGrep('^line [12]5$') }))).toEqual(['line 15', 'line 25']);
    expect(() => compileLogGrep('(')).toThrow(expect.objectContaining({ code: 'LOG_FILTER_INVALID' }));
    expect(() => compileLogGrep('a'.repeat(1001))).toThrow(expect.objectContaining({ code: 'LOG_FILTER_INVALID' }));
  });

  it('follow picks up appended lines, a line written in pieces, and a new segment; ends when removed and read', async () => {
    seg(1, text(0, 5), 'gz');
    seg(2, text(5, 8));
    const ctl = new AbortController();
    const got: string[] = [];
    const done = (async () => {
      for await (const l of reader().lines(ID, { follow: true, tail: 4, signal: ctl.signal })) got.push(l.line);
    })();
    const until = async (n: number) => {
      for (let k = 0; got.length < n; k++) {
        if (k > 6000) throw new Error(`stuck at ${got.length} lines: ${got.join(',')}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    };
    await until(4);
    expect(got).toEqual(range(4, 8));
    const p2 = join(dir, 'seg-000002.jsonl');
    appendFileSync(p2, text(8, 10));
    const half = JSON.stringify(rec(10));
    appendFileSync(p2, half.slice(0, 10));
    await until(6);
    appendFileSync(p2, `${half.slice(10)}\n`);
    await until(7);
    // The writer closes segment 2 (compressed, .jsonl gone) and opens 3.
    seg(3, text(11, 13));
    await until(9);
    appendFileSync(join(dir, 'seg-000003.jsonl'), text(13, 14));
    writeFileSync(join(dir, 'removed.json'), JSON.stringify({ removedAt: new Date().toISOString(), id: ID, name: 'x', project: 'p' }));
    await done;
    expect(got).toEqual(range(4, 14));
  });

  it('follow waits for the first segment and stops when the caller aborts', async () => {
    rmSync(dir, { recursive: true });
    const ctl = new AbortController();
    const got: string[] = [];
    const done = (async () => {
      for await (const l of reader().lines(ID, { follow: true, signal: ctl.signal })) {
        got.push(l.line);
        if (got.length === 2) ctl.abort();
      }
    })();
    mkdirSync(dir);
    seg(1, text(0, 3));
    await done;
    expect(got).toEqual(range(0, 2));
  });

  it('follow ends once the session is gone (ended) and what is stored is read', async () => {
    seg(1, text(0, 3));
    let gone = false;
    const got: string[] = [];
    const done = (async () => {
      for await (const l of reader().lines(ID, { follow: true, ended: () => gone })) got.push(l.line);
    })();
    appendFileSync(join(dir, 'seg-000001.jsonl'), text(3, 4));
    gone = true;
    await done;
    expect(got).toEqual(range(0, 4));
  });

  it('follow with until stops at the first line after it', async () => {
    seg(1, text(0, 10));
    const got = await all(reader().lines(ID, { follow: true, until: rec(4).ts }));
    expect(got).toEqual(range(0, 5));
  });
});
