import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import type { LogLine } from '@berth/client-sdk/protocol';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { EventBus } from '../events/bus.js';
import type { ContainerObservation, ContainerRuntime } from '../runtime/port.js';
import { systemClock } from '../shared/clock.js';
import type { SessionRecord } from '../store/sessions.js';
import { readAllStored, tsKey } from './format.js';
import { LogIngest } from './ingest.js';
import { LogRetention } from './retention.js';
import { SegmentWriter } from './writer.js';

let root: string;
beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'berth-ingest-'));
});
afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

const T = (n: number) => `2026-12-02T08:00:0${n}.000000001Z`;

/**
 * The engine as the ingest sees it, for the resume arithmetic only (the real engine is in
 * test/integration/logs-ingest.test.ts): one stopped container whose log `since` replays inclusively.
 */
function fakeRuntime(lines: LogLine[]): ContainerRuntime {
  const c: ContainerObservation = { id: 'c1', name: 'x', labels: {}, status: 'exited', exitCode: 0, oomKilled: false, startedAt: T(0), finishedAt: T(9) };
  return {
    inspect: async () => c,
    async *logs(_id: string, opts: { since?: string }) {
      for (const l of lines) if (!opts.since || tsKey(l.ts) >= tsKey(opts.since)) yield l;
    },
  } as unknown as ContainerRuntime;
}

describe('LogIngest', () => {
  it('resumes after the lines already stored, counting off those that share the last timestamp', async () => {
    const engine: LogLine[] = [
      { ts: T(1), stream: 'stdout', line: 'a' },
      { ts: T(2), stream: 'stdout', line: 'b' },
      { ts: T(2), stream: 'stderr', line: 'c' },
      { ts: T(2), stream: 'stdout', line: 'd' },
      { ts: T(3), stream: 'stdout', line: 'e' },
    ];
    const dir = join(root, 'aaaaaaaaaaaa');
    const w = await SegmentWriter.open(dir, { segmentBytes: 1 << 20 });
    await w.append([...engine.slice(0, 3), { ts: T(2), stream: 'berth', line: 'berth: container restarted', event: 'restart' }]);
    await w.close();

    const log = pino({ level: 'silent' });
    const session = { id: 'aaaaaaaaaaaa', name: 's', project: 'p', containerId: 'c1' } as SessionRecord;
    const ingest = new LogIngest({
      runtime: fakeRuntime(engine),
      sessions: { get: (id) => (id === session.id ? session : undefined), withContainers: () => [session], existing: (ids) => new Set(ids.filter((i) => i === session.id)) },
      bus: new EventBus(),
      log,
      clock: systemClock,
      root,
      segmentBytes: 1 << 20,
      retention: new LogRetention(root, { sessionBytes: 1 << 30, totalBytes: 1 << 30, days: 14 }, log),
    });
    const stop = new AbortController();
    const running = ingest.start(stop.signal);
    try {
      for (let i = 0; i < 200 && (await readAllStored(dir)).length < 6; i++) await new Promise((r) => setTimeout(r, 25));
      await ingest.removed(session);
    } finally {
      stop.abort();
      await running;
    }
    expect((await readAllStored(dir)).map((l) => l.line)).toEqual(['a', 'b', 'c', 'berth: container restarted', 'd', 'e']);
    expect(JSON.parse(await readFile(join(dir, 'removed.json'), 'utf8'))).toMatchObject({ id: session.id, name: 's', project: 'p' });
  });
});
