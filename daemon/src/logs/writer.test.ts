import { appendFile, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MAX_LINE_BYTES, readAllStored, segmentFile, splitLine, tsKey, type StoredLine } from './format.js';
import { LogRetention } from './retention.js';
import { SegmentWriter } from './writer.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'berth-logw-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const ts = (i: number, frac = 9) => `2026-12-02T08:00:${String(Math.floor(i / 1000) % 60).padStart(2, '0')}.${String(i % 1000).padStart(3, '0').padEnd(frac, '0')}Z`;
const line = (i: number, t = ts(i)): StoredLine => ({ ts: t, stream: 'stdout', line: `line ${i}` });

describe('SegmentWriter', () => {
  it('appends lines and reads them back in order', async () => {
    const w = await SegmentWriter.open(dir, { segmentBytes: 1 << 20 });
    await w.append([line(1), line(2)]);
    await w.append([{ ts: ts(3), stream: 'stderr', line: 'oops' }]);
    await w.close();
    expect((await readAllStored(dir)).map((l) => l.line)).toEqual(['line 1', 'line 2', 'oops']);
    expect(await readFile(join(dir, segmentFile(1)), 'utf8')).toContain('{"ts":"2026-12-02T08:00:00.001000000Z","stream":"stdout","line":"line 1"}\n');
  });

  it('rotates past segmentBytes and gzips the closed segments', async () => {
    const w = await SegmentWriter.open(dir, { segmentBytes: 64 * 1024 });
    for (let b = 0; b < 20; b++) await w.append(Array.from({ length: 500 }, (_, i) => line(b * 500 + i)));
    await w.close();
    const files = (await readdir(dir)).sort();
    expect(files.filter((f) => f.endsWith('.jsonl.gz')).length).toBeGreaterThan(1);
    expect(files.filter((f) => f.endsWith('.jsonl'))).toHaveLength(1);
    const gz = files.find((f) => f.endsWith('.gz'))!;
    expect(gunzipSync(await readFile(join(dir, gz))).toString('utf8')).toMatch(/^\{"ts"/);
    const all = await readAllStored(dir);
    expect(all.map((l) => l.line)).toEqual(Array.from({ length: 10_000 }, (_, i) => `line ${i}`));
  });

  it('truncates a torn last line on reopen and resumes after the last whole line', async () => {
    let w = await SegmentWriter.open(dir, { segmentBytes: 1 << 20 });
    await w.append([line(1), line(2)]);
    await w.close();
    await appendFile(join(dir, segmentFile(1)), '{"ts":"2026-12-02T08:00:00.003Z","stream":"std');
    w = await SegmentWriter.open(dir, { segmentBytes: 1 << 20 });
    expect(w.position).toEqual({ ts: ts(2), count: 1 });
    await w.append([line(3)]);
    await w.close();
    expect((await readAllStored(dir)).map((l) => l.line)).toEqual(['line 1', 'line 2', 'line 3']);
    expect((await readFile(join(dir, segmentFile(1)), 'utf8')).split('\n').filter(Boolean)).toHaveLength(3);
  });

  it('splits a long line into pieces of at most 64 KiB, all but the last partial', async () => {
    const long = 'é'.repeat(MAX_LINE_BYTES); // 2 bytes each: 128 KiB
    const w = await SegmentWriter.open(dir, { segmentBytes: 1 << 20 });
    await w.append([{ ts: ts(1), stream: 'stdout', line: long }, line(2)]);
    await w.close();
    const stored = await readAllStored(dir);
    expect(stored.map((l) => !!l.partial)).toEqual([true, false, false]);
    expect(stored.slice(0, 2).map((l) => l.line).join('')).toBe(long);
    for (const l of stored) expect(Buffer.byteLength(l.line)).toBeLessThanOrEqual(MAX_LINE_BYTES);
    expect(splitLine('a'.repeat(MAX_LINE_BYTES))).toHaveLength(1);
    expect(splitLine('😀'.repeat(MAX_LINE_BYTES / 4 + 1)).map((p) => Buffer.byteLength(p))).toEqual([MAX_LINE_BYTES, 4]);
  });

  it('drops the pieces of a long line whose last piece never got written', async () => {
    const w = await SegmentWriter.open(dir, { segmentBytes: 1 << 20 });
    await w.append([line(1)]);
    await w.close();
    await appendFile(join(dir, segmentFile(1)), `${JSON.stringify({ ts: ts(2), stream: 'stdout', line: 'x', partial: true })}\n`);
    const again = await SegmentWriter.open(dir, { segmentBytes: 1 << 20 });
    expect(again.position).toEqual({ ts: ts(1), count: 1 });
    await again.close();
    expect((await readAllStored(dir)).map((l) => l.line)).toEqual(['line 1']);
  });

  it('counts the stored lines at the last timestamp (markers and pieces aside), across segments', async () => {
    const t = ts(7);
    const w = await SegmentWriter.open(dir, { segmentBytes: 64 * 1024 });
    await w.append([line(6)]);
    // More than a segment of lines with one timestamp, a marker among them.
    for (let b = 0; b < 4; b++) await w.append(Array.from({ length: 500 }, (_, i) => line(1000 + b * 500 + i, t)));
    await w.append([{ ts: t, stream: 'berth', line: 'berth: container restarted', event: 'restart' }]);
    expect(w.position).toEqual({ ts: t, count: 2000 });
    await w.close();
    const again = await SegmentWriter.open(dir, { segmentBytes: 64 * 1024 });
    expect(again.position).toEqual({ ts: t, count: 2000 });
    await again.close();
    expect((await readdir(dir)).filter((f) => f.endsWith('.gz')).length).toBeGreaterThan(0);
  });

  it('compresses a closed segment a crash left plain, and cleans up a half-written gzip', async () => {
    await writeFile(join(dir, segmentFile(1)), `${JSON.stringify(line(1))}\n`);
    await writeFile(join(dir, `${segmentFile(1, true)}.tmp`), 'half');
    await writeFile(join(dir, segmentFile(2)), `${JSON.stringify(line(2))}\n`);
    const w = await SegmentWriter.open(dir, { segmentBytes: 1 << 20 });
    await w.close();
    expect((await readdir(dir)).sort()).toEqual([segmentFile(1, true), segmentFile(2)]);
    expect((await readAllStored(dir)).map((l) => l.line)).toEqual(['line 1', 'line 2']);
  });

  it('compares timestamps of different precision in time order', () => {
    expect(tsKey('2026-12-02T08:00:00.5Z') > tsKey('2026-12-02T08:00:00.123456789Z')).toBe(true);
    expect(tsKey('2026-12-02T08:00:01Z') > tsKey('2026-12-02T08:00:00.999999999Z')).toBe(true);
  });
});

describe('LogRetention', () => {
  const log = pino({ level: 'silent' });

  async function session(id: string, segs: number, bytesEach: number, removedAt?: string) {
    const d = join(dir, id);
    await mkdir(d);
    for (let n = 1; n <= segs; n++) await writeFile(join(d, n < segs ? segmentFile(n, true) : segmentFile(n)), Buffer.alloc(bytesEach, 0x61));
    if (removedAt) await writeFile(join(d, 'removed.json'), JSON.stringify({ removedAt, id, name: id, project: 'p' }));
    return d;
  }

  it('cuts a session to logRetentionBytes from its oldest segment, never the one being written', async () => {
    const d = await session('aaaaaaaaaaaa', 5, 100_000);
    const r = new LogRetention(dir, { sessionBytes: 250_000, totalBytes: 1 << 30, days: 14 }, log);
    expect(await r.pruneLogs(new Date())).toEqual({ removedDirs: 0, removedBytes: 300_000 });
    expect((await readdir(d)).sort()).toEqual([segmentFile(4, true), segmentFile(5)]);
    const tiny = new LogRetention(dir, { sessionBytes: 1, totalBytes: 1 << 30, days: 14 }, log);
    await tiny.pruneLogs(new Date());
    expect(await readdir(d)).toEqual([segmentFile(5)]);
  });

  it('removes a removed session after logRetentionDays, and removed sessions first under the global cap', async () => {
    const old = await session('bbbbbbbbbbbb', 2, 1000, '2026-11-01T00:00:00Z');
    const recent = await session('cccccccccccc', 3, 100_000, '2026-12-01T00:00:00Z');
    const live = await session('dddddddddddd', 3, 100_000);
    const r = new LogRetention(dir, { sessionBytes: 1 << 30, totalBytes: 450_000, days: 14 }, log);
    const res = await r.pruneLogs(new Date('2026-12-02T00:00:00Z'));
    expect(res.removedDirs).toBe(1);
    expect(await readdir(old).catch(() => null)).toBeNull();
    // 600 kB → 450 kB: the removed session loses its oldest segments first, the live one keeps all.
    expect((await readdir(recent)).filter((f) => f.startsWith('seg-'))).toEqual([segmentFile(3)]);
    expect((await readdir(live)).filter((f) => f.startsWith('seg-'))).toHaveLength(3);
    const harder = new LogRetention(dir, { sessionBytes: 1 << 30, totalBytes: 150_000, days: 14 }, log);
    await harder.pruneLogs(new Date('2026-12-02T00:00:00Z'));
    expect(await readdir(recent).catch(() => null)).toBeNull();
    expect((await readdir(live)).filter((f) => f.startsWith('seg-'))).toEqual([segmentFile(3)]);
  });
});
