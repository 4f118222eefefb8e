import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const run = promisify(execFile);
const root = fileURLToPath(new URL('../../', import.meta.url));

/** What a plugin writes must type-check against the built SDK (and what it must not write, must not). */
const fixture = (entry: string) => `
import { BerthClient, type Session, type StreamedEvent, type ConnectionState } from ${JSON.stringify(entry)};
const c = new BerthClient();
export async function plugin(): Promise<void> {
  await c.sessions.list();
  await c.projects.list();
  await c.daemon.status();
  await c.images.list();
  await c.sessions.list({ limit: 1 }, { signal: AbortSignal.timeout(10), timeoutMs: 5 });
  await c.sessions.get({ id: 'x' }, { signal: new AbortController().signal });
  // @ts-expect-error sessions.get needs its id
  await c.sessions.get();
  for await (const s of c.sessions.iterate()) s satisfies Session;
  for await (const e of c.events({ types: ['session.*'], session: 'web-1', signal: AbortSignal.timeout(1) })) {
    e satisfies StreamedEvent;
    if (e.type === 'gap') e.data.reason satisfies 'restarted' | 'overflow';
    else if (e.type === 'session.state') e.data.session satisfies Session;
  }
  const done: Session = await c.waitFor('x', ['exited', 'failed'], { timeoutMs: 1 });
  await c.waitFor(done.id, (s) => s.restartCount > 0);
  const off = c.onConnectionChange((s: ConnectionState) => void s);
  off();
}
`;

describe('the SDK types', () => {
  it('params may be left out where every field is optional; per-call options, iterate, events, waitFor type-check', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'bt-types-'));
    try {
      const file = join(dir, 'plugin.mts');
      writeFileSync(file, fixture(join(root, 'client-sdk/dist/index.js')));
      const tsc = join(root, 'node_modules/typescript/bin/tsc');
      const args = ['--noEmit', '--strict', '--module', 'nodenext', '--moduleResolution', 'nodenext', '--target', 'es2022', '--lib', 'es2023,esnext.disposable', '--types', 'node', '--typeRoots', join(root, 'node_modules/@types'), '--skipLibCheck', file];
      const r = await run(process.execPath, [tsc, ...args]).then(
        () => '',
        (e: { stdout: string }) => e.stdout,
      );
      expect(r).toBe('');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);
});
