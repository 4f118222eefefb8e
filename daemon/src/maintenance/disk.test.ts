import { link, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { FakeClock } from '../../test/helpers/clock.js';
import { DiskUsage } from './disk.js';

describe('DiskUsage', () => {
  const dirs: string[] = [];
  afterEach(async () => {
    for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
  });

  it('sums $BERTH_HOME by kind, follows no link, counts a hard-linked file once, and walks at most once per maxAge', async () => {
    const home = await mkdtemp(join(tmpdir(), 'bt-disk-'));
    const outside = await mkdtemp(join(tmpdir(), 'bt-disk-out-'));
    dirs.push(home, outside);
    await writeFile(join(outside, 'big'), Buffer.alloc(1_000_000));
    await writeFile(join(home, 'berth.db'), Buffer.alloc(1000));
    await writeFile(join(home, 'berth.db-wal'), Buffer.alloc(100));
    await mkdir(join(home, 'backups'));
    await writeFile(join(home, 'backups', 'berth-1.db'), Buffer.alloc(2000));
    await writeFile(join(home, 'berth.db.before-restore-1'), Buffer.alloc(500));
    await mkdir(join(home, 'logs', 's1'), { recursive: true });
    await writeFile(join(home, 'logs', 's1', 'out.log'), Buffer.alloc(3000));
    await link(join(home, 'logs', 's1', 'out.log'), join(home, 'logs', 's1', 'again.log'));
    await symlink(outside, join(home, 'logs', 'escape'));
    await mkdir(join(home, 'checkouts', 'web', 'one'), { recursive: true });
    await writeFile(join(home, 'checkouts', 'web', 'one', 'f'), Buffer.alloc(4000));
    await mkdir(join(home, 'repos'));
    await writeFile(join(home, 'secrets.yaml'), Buffer.alloc(10));

    const clock = new FakeClock(Date.parse('2026-12-02T09:00:00Z'));
    const du = new DiskUsage(home, clock, 60_000);
    expect(du.current()).toBeNull(); // starts a walk, never waits for it
    const first = await du.refresh();
    expect(first.db).toBe(1100);
    expect(first.backups).toBeGreaterThanOrEqual(2500);
    expect(first.backups).toBeLessThan(2500 + 64 * 1024); // plus the directory itself
    expect(first.logs).toBeGreaterThanOrEqual(3000);
    expect(first.logs).toBeLessThan(6000 + 64 * 1024); // once, not the 1 MB behind the link
    expect(first.checkouts).toBeGreaterThanOrEqual(4000);
    expect(first.other).toBeGreaterThanOrEqual(10);
    expect(first.total).toBe(first.db + first.backups + first.logs + first.checkouts + first.repos + first.other);
    expect(first.measuredAt).toBe('2026-12-02T09:00:00.000Z');

    await writeFile(join(home, 'berth.db'), Buffer.alloc(5000));
    clock.advance(30_000);
    expect(du.current()?.db).toBe(1100); // fresh enough: no walk
    clock.advance(30_000);
    expect(du.current()?.db).toBe(1100); // stale: answered at once, measured again behind it
    expect((await du.refresh()).db).toBe(5100);
    expect(du.current()?.db).toBe(5100);
  });
});
