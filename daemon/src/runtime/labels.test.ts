import { NAME_PATTERN } from '@berth/client-sdk/protocol';
import { describe, expect, it } from 'vitest';
import { LABELS, networkLabels, networkName } from './labels.js';

/** Deterministic pseudo-random project names matching NAME_PATTERN (mulberry32). */
function names(n: number, seed = 7): string[] {
  let a = seed;
  const rnd = () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const first = 'abcdefghijklmnopqrstuvwxyz0123456789';
  const rest = `${first}-`;
  // Short names over a small alphabet, so prefixes, suffixes and `-internal`-like tails recur.
  const pick = (s: string) => s[Math.floor(rnd() * s.length)]!;
  return Array.from({ length: n }, () => {
    const len = 1 + Math.floor(rnd() * 12);
    let x = pick(first);
    for (let i = 1; i < len; i++) x += pick(rnd() < 0.5 ? 'inet-ral' : rest);
    return x;
  });
}

const ADVERSARIAL = [
  'x',
  'x-internal',
  'internal',
  'internal-x',
  'net',
  'net-x',
  'x-net',
  'internal-net-x',
  'net-internal-x',
  'x-internal-internal',
  'berth-net-x',
  'berth-internal-x',
  'a'.repeat(63),
];

const I = '0123456789ab';

describe('networkName', () => {
  it('no two (project, internal) pairs share a name, for project names matching NAME_PATTERN', () => {
    const projects = [...new Set([...ADVERSARIAL, ...names(20_000)])];
    for (const p of projects) expect(NAME_PATTERN.test(p), p).toBe(true);
    const seen = new Map<string, string>();
    for (const p of projects) {
      for (const internal of [false, true]) {
        const n = networkName(p, internal, I);
        const who = `${p}/${internal ? 'internal' : 'bridge'}`;
        expect(seen.get(n), `${who} collides`).toBeUndefined();
        seen.set(n, who);
      }
    }
  });

  it('the two kinds differ before the project name, so neither kind can spell the other', () => {
    // The whole argument for any project name: a bridge name and an internal name differ at a
    // position inside their fixed prefixes, where no project name can reach.
    const bridge = networkName('', false, I);
    const internal = networkName('', true, I);
    const differAt = [...bridge].findIndex((c, i) => internal[i] !== c);
    expect(differAt).toBeGreaterThanOrEqual(0);
    expect(differAt).toBeLessThan(Math.min(bridge.length, internal.length));
    for (const p of ADVERSARIAL) {
      expect(networkName(p, false, I)).toBe(bridge + p);
      expect(networkName(p, true, I)).toBe(internal + p);
    }
    // Two daemons never share a name.
    expect(networkName('web', false, I)).not.toBe(networkName('web', false, 'ba9876543210'));
    expect(networkName('x', true, I)).not.toBe(networkName('x-internal', false, I));
  });

  it('labels say whose network it is and which kind', () => {
    expect(networkLabels('inst1', 'web', true)).toEqual({
      [LABELS.managed]: 'true',
      [LABELS.instance]: 'inst1',
      [LABELS.project]: 'web',
      [LABELS.network]: 'internal',
    });
    expect(networkLabels('inst1', 'web', false)[LABELS.network]).toBe('bridge');
  });
});
