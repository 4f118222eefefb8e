import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const src = dirname(fileURLToPath(import.meta.url));

/** Every package a module loads statically (dynamic `import()` excluded), following berth's own modules. */
function staticPackages(entry: string): { packages: Set<string>; modules: string[] } {
  const packages = new Set<string>();
  const seen = new Set<string>();
  const visit = (file: string) => {
    if (seen.has(file)) return;
    seen.add(file);
    const text = readFileSync(file, 'utf8');
    // `import x from 'y'` and `export ... from 'y'`, but not `import type` / `export type` (erased).
    for (const m of text.matchAll(/^(?:import|export)\s+(?!type\s)[^;]*?from\s+'([^']+)';/gms)) {
      const spec = m[1]!;
      if (spec.startsWith('.')) visit(resolve(dirname(file), spec.replace(/\.js$/, '.ts')));
      else packages.add(spec);
    }
  };
  visit(entry);
  return { packages, modules: [...seen].map((f) => f.slice(src.length + 1)) };
}

describe('boot: what berthd loads before its socket answers', () => {
  it('only node, commander and the protocol: no engine client, store, validator, YAML parser, logger or HTTP framework', () => {
    const { packages, modules } = staticPackages(join(src, 'boot.ts'));
    const heavy = [...packages].filter((p) => !p.startsWith('node:') && p !== 'commander' && p !== '@berth/client-sdk/protocol');
    expect(heavy, `boot.ts statically loads ${heavy.join(', ')} (through ${modules.join(', ')})`).toEqual([]);
    // The walk did follow berth's own modules (so the check above means something).
    expect(modules).toEqual(expect.arrayContaining(['boot.ts', 'config/layers.ts', 'rpc/listener.ts', 'rpc/socket.ts']));
  });

  it('the daemon itself does load them (the walk sees a heavy import where there is one)', () => {
    const { packages } = staticPackages(join(src, 'main.ts'));
    expect([...packages]).toEqual(expect.arrayContaining(['dockerode', 'fastify', 'zod', 'pino', 'better-sqlite3']));
  });
});
