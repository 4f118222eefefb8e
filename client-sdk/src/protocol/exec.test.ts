import { describe, expect, it } from 'vitest';
import { ExecFrame, ExecFrameReader, MAX_EXEC_FRAME, encodeExecFrame, execFrameJson, execQuery, fromExecQuery } from './exec.js';

describe('exec frames', () => {
  it('round-trip whole, split byte by byte, and several in one chunk', () => {
    const bytes = new Uint8Array([...encodeExecFrame(ExecFrame.STDOUT, new Uint8Array([1, 2, 3])), ...encodeExecFrame(ExecFrame.EXIT, { exitCode: 7 }), ...encodeExecFrame(ExecFrame.STDIN_EOF)]);
    const whole = new ExecFrameReader().push(bytes);
    expect(whole.map((f) => f.type)).toEqual([ExecFrame.STDOUT, ExecFrame.EXIT, ExecFrame.STDIN_EOF]);
    expect([...whole[0]!.payload]).toEqual([1, 2, 3]);
    expect(execFrameJson(whole[1]!.payload)).toEqual({ exitCode: 7 });
    const r = new ExecFrameReader();
    const split = [...bytes].flatMap((b) => r.push(new Uint8Array([b])));
    expect(split.map((f) => [f.type, [...f.payload]])).toEqual(whole.map((f) => [f.type, [...f.payload]]));
  });

  it('refuses an unknown type and a frame over the limit (the peer does not speak the protocol)', () => {
    expect(() => new ExecFrameReader().push(new Uint8Array([99, 0, 0, 0, 0]))).toThrow();
    const big = new Uint8Array(5);
    new DataView(big.buffer).setUint32(1, MAX_EXEC_FRAME + 1);
    expect(() => new ExecFrameReader().push(big)).toThrow();
  });

  it('params through the query and back; env names stay names (no prototype games)', () => {
    const p = { id: 'x', cmd: ['sh', '-c', 'echo "a&b=c"'], tty: true, stdin: true, env: { A: '1=2', __proto__x: 'y' }, workdir: '/w', cols: 80, rows: 24, timeoutSec: 5 };
    expect(fromExecQuery('x', Object.fromEntries(groupQuery(execQuery(p))))).toEqual(p);
    const odd = fromExecQuery('x', { cmd: 'true', env: ['__proto__=1', 'NOEQ'] }).env as Record<string, string>;
    expect(Object.getPrototypeOf(odd)).toBe(Object.prototype);
    expect(Object.keys(odd)).toEqual(['__proto__', 'NOEQ']);
  });
});

/** A query string the way fastify's parser gives it: repeated keys as arrays. */
function groupQuery(q: string): [string, string | string[]][] {
  const m = new Map<string, string[]>();
  for (const [k, v] of new URLSearchParams(q)) m.set(k, [...(m.get(k) ?? []), v]);
  return [...m].map(([k, v]) => [k, v.length === 1 && k !== 'cmd' ? v[0]! : v]);
}
