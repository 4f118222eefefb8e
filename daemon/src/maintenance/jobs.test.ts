import { mkdir, mkdtemp, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { BerthError } from '@berth/client-sdk/protocol';
import { Store } from '../store/index.js';
import { FakeClock } from '../../test/helpers/clock.js';
import { Backups } from './backup.js';
import { imagesJob, pruneJob } from './jobs.js';

const log = pino({ level: 'silent' });
const signal = new AbortController().signal;

describe('maintenance jobs (logic; the engine side is in test/integration/maintenance.test.ts)', () => {
  const dirs: string[] = [];
  afterEach(async () => {
    for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
  });

  it('prune runs every pruner, sums what they removed, reports one that failed, and fails only when all did', async () => {
    const job = pruneJob([
      async () => ({ name: 'logs', removed: 2, items: Array.from({ length: 30 }, (_, i) => `s${i}`) }),
      async () => {
        throw new Error('table locked');
      },
      async () => ({ name: 'records', removed: 5 }),
    ]);
    const r = await job.run(signal);
    expect(r.removed).toBe(7);
    expect((r.results as { items?: string[] }[])[0]!.items).toHaveLength(20);
    expect(r.failed).toEqual([{ name: 'pruner 1', error: 'table locked' }]);
    const none = pruneJob([
      async () => {
        throw new Error('no');
      },
    ]);
    await expect(none.run(signal)).rejects.toThrow('no');
    expect(await pruneJob([]).run(signal)).toEqual({ removed: 0, results: [], failed: [] });
  });

  it('images asks only for its own dangling images and counts one the engine refuses as kept', async () => {
    const asked: Record<string, string>[] = [];
    const removed: string[] = [];
    const job = imagesJob(
      {
        danglingImages: async (labels) => {
          asked.push(labels);
          return [
            { id: 'sha256:a', tags: [], sizeBytes: 10, createdAt: '', labels },
            { id: 'sha256:b', tags: [], sizeBytes: 20, createdAt: '', labels },
          ];
        },
        removeImage: async (id) => {
          if (id === 'sha256:b') throw new BerthError('IMAGE_IN_USE', 'a container uses it');
          removed.push(id);
        },
      },
      'abc123',
      log,
    );
    expect(await job.run(signal)).toEqual({ removed: 1, bytes: 10, images: ['sha256:a'], kept: 1 });
    expect(asked).toEqual([{ 'dev.berth.image': 'true', 'dev.berth.instance': 'abc123' }]);
    expect(removed).toEqual(['sha256:a']);
  });

  it('the backup-temps pruner removes only half-written copies older than its age', async () => {
    const home = await mkdtemp(join(tmpdir(), 'bt-jobs-'));
    dirs.push(home);
    const store = Store.open(':memory:');
    const clock = new FakeClock(Date.parse('2026-12-02T09:00:00Z'));
    const b = new Backups(store.db, { home, keep: 7, clock, log });
    await mkdir(b.dir);
    const old = join(b.dir, '.berth-20261201T000000000Z.db.tmp-0a1b2c3d');
    const fresh = join(b.dir, '.berth-20261202T085959000Z.db.tmp-0a1b2c3e');
    const keep = join(b.dir, 'berth-20261201T000000000Z.db');
    for (const f of [old, fresh, keep]) await writeFile(f, 'x');
    const day = new Date('2026-12-01T00:00:00Z');
    await utimes(old, day, day);
    await utimes(keep, day, day);
    await utimes(fresh, clock.now(), clock.now());
    expect(await b.removeStaleTemps(3600_000)).toEqual([old]);
    expect(await b.list()).toEqual([keep]);
    store.close();
  });
});
