import { describe, expect, it } from 'vitest';
import type { LogLine } from '@berth/client-sdk/protocol';
import { Demuxer, LogDemuxer, fixedNano, toEngineSince, toLogLine } from './demux.js';

/** One engine frame: [stream, 0, 0, 0, size BE] + payload. */
const frame = (stream: 1 | 2, payload: Buffer | string) => {
  const body = typeof payload === 'string' ? Buffer.from(payload) : payload;
  const h = Buffer.alloc(8);
  h[0] = stream;
  h.writeUInt32BE(body.length, 4);
  return Buffer.concat([h, body]);
};

function collect(chunks: Buffer[]): [string, string][] {
  const out: [string, string][] = [];
  const d = new Demuxer((s, l) => out.push([s, l]));
  for (const c of chunks) d.push(c);
  d.end();
  return out;
}

describe('Demuxer', () => {
  it('splits frames into lines per stream, a line continuing across frames', () => {
    const out = collect([frame(1, 'one\ntw'), frame(2, 'err\n'), frame(1, 'o\nthree')]);
    expect(out).toEqual([
      ['stdout', 'one'],
      ['stderr', 'err'],
      ['stdout', 'two'],
      ['stdout', 'three'],
    ]);
  });

  it('waits for a header or a payload split across chunks, byte by byte included', () => {
    const all = Buffer.concat([frame(1, 'hello\n'), frame(2, 'world\n')]);
    const bytes = [...all].map((b) => Buffer.from([b]));
    expect(collect(bytes)).toEqual([
      ['stdout', 'hello'],
      ['stderr', 'world'],
    ]);
  });

  it('keeps a UTF-8 character whole when its bytes are split across frames', () => {
    const text = Buffer.from('café ✓ 😀\n');
    const cut = text.indexOf(Buffer.from('😀')) + 2;
    const out = collect([frame(1, text.subarray(0, 3)), frame(1, text.subarray(3, cut)), frame(1, text.subarray(cut))]);
    expect(out).toEqual([['stdout', 'café ✓ 😀']]);
  });
});

describe('log line timestamps', () => {
  it('takes the engine timestamp off the line, padded to nanoseconds so they sort as strings', () => {
    expect(toLogLine('stdout', '2026-11-22T07:41:23.1234Z hi there\r')).toEqual({ ts: '2026-11-22T07:41:23.123400000Z', stream: 'stdout', line: 'hi there' });
    expect(fixedNano('2026-11-22T07:41:23Z')).toBe('2026-11-22T07:41:23.000000000Z');
    expect(toEngineSince('2026-11-22T07:41:23.5Z')).toBe(`${Date.parse('2026-11-22T07:41:23Z') / 1000}.500000000`);
  });
});

describe('LogDemuxer', () => {
  const T1 = '2026-12-02T08:00:00.1Z';
  const T2 = '2026-12-02T08:00:00.2Z';
  const run = (chunks: Buffer[], max?: number) => {
    const out: LogLine[] = [];
    const d = new LogDemuxer((l) => out.push(l), max);
    for (const c of chunks) d.push(c);
    d.end();
    return out;
  };

  it('gives each message its timestamp, and joins the pieces of a line the engine cut under the first one', () => {
    const out = run([frame(1, `${T1} one\n`), frame(1, `${T1} lo`), frame(2, `${T2} err\n`), frame(1, `${T2} ng\n`)]);
    expect(out).toEqual([
      { ts: '2026-12-02T08:00:00.100000000Z', stream: 'stdout', line: 'one' },
      { ts: '2026-12-02T08:00:00.200000000Z', stream: 'stderr', line: 'err' },
      { ts: '2026-12-02T08:00:00.100000000Z', stream: 'stdout', line: 'long' },
    ]);
  });

  it('emits an endless line in bounded parts marked partial, a character never cut', () => {
    const out = run([frame(1, `${T1} ${'a'.repeat(9)}`), frame(1, `${T2} 😀😀`), frame(1, `${T2} b\n`)], 10);
    expect(out.map((l) => [l.line, !!l.partial])).toEqual([
      ['aaaaaaaaa', true],
      ['😀😀b', false],
    ]);
    expect(out.every((l) => l.ts === '2026-12-02T08:00:00.100000000Z')).toBe(true);
  });
});
