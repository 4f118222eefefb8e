import { execFileSync } from 'node:child_process';
import { appendFileSync, cpSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const ROOT = new URL('..', import.meta.url).pathname;
const BIN = join(ROOT, 'node_modules/.bin/depcruise');

interface Violation {
  rule: { name: string };
  from: string;
  to: string;
}

/** dependency-cruiser with the project's rules over `cwd`'s daemon/src and client-sdk/src. */
function violations(cwd: string): Violation[] {
  let out: string;
  try {
    out = execFileSync(BIN, ['--config', '.dependency-cruiser.cjs', '--output-type', 'json', 'daemon/src', 'client-sdk/src'], { cwd, encoding: 'utf8', maxBuffer: 64 << 20 });
  } catch (err) {
    // It exits non-zero when it finds errors; the report is still on stdout.
    out = (err as { stdout?: string }).stdout ?? '';
    if (!out) throw err;
  }
  return (JSON.parse(out) as { summary: { violations: Violation[] } }).summary.violations;
}

describe('imports point down and form no cycle (npm run check:deps)', () => {
  it('holds for the tree as it is', () => {
    expect(violations(ROOT).map((v) => `${v.rule.name}: ${v.from} -> ${v.to}`)).toEqual([]);
  }, 120_000);

  describe('and the rules catch what they are for', () => {
    let copy: string;
    beforeAll(() => {
      copy = mkdtempSync(join(tmpdir(), 'bt-arch-'));
      for (const p of ['daemon/src', 'client-sdk/src', 'client-sdk/package.json', 'daemon/package.json', 'package.json', 'tsconfig.json', '.dependency-cruiser.cjs']) {
        cpSync(join(ROOT, p), join(copy, p), { recursive: true });
      }
      symlinkSync(join(ROOT, 'node_modules'), join(copy, 'node_modules'));
      // A cycle (store <-> shared), an upward import (store -> sessions), the SDK reaching into the daemon.
      appendFileSync(join(copy, 'daemon/src/shared/clock.ts'), "\nexport * as db from '../store/db.js';\n");
      appendFileSync(join(copy, 'daemon/src/store/db.ts'), "\nexport * as upward from '../sessions/service.js';\n");
      appendFileSync(join(copy, 'client-sdk/src/client.ts'), "\nexport * as daemon from '../../daemon/src/version.js';\n");
    });
    afterAll(() => rmSync(copy, { recursive: true, force: true }));

    it('reports each planted import under its rule', () => {
      const found = violations(copy).map((v) => v.rule.name);
      expect(found).toContain('no-circular');
      expect(found).toContain('shared-is-lowest');
      expect(found).toContain('store-imports-no-service');
      expect(found).toContain('sdk-never-imports-the-daemon');
    }, 120_000);
  });
});
