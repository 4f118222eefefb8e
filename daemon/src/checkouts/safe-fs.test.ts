import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { assertOwnObjects, assertProjectPath, isRealDir, safeRead } from './safe-fs.js';

let root: string;
let outside: string;
beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), 'bt-safefs-'));
  outside = mkdtempSync(join(tmpdir(), 'bt-outside-'));
  writeFileSync(join(outside, 'secret'), 'TOPSECRET');
  mkdirSync(join(root, '.git', 'refs'), { recursive: true });
});
afterEach(() => {
  rmSync(root, { recursive: true, force: true });
  rmSync(outside, { recursive: true, force: true });
});

describe('safeRead (files an agent controls)', () => {
  it('reads a regular file within the cap', async () => {
    writeFileSync(join(root, '.git', 'HEAD'), 'ref: refs/heads/x\n');
    expect((await safeRead(root, '.git/HEAD'))?.toString()).toBe('ref: refs/heads/x\n');
  });

  it('refuses links in the last component and in any directory on the way', async () => {
    symlinkSync(join(outside, 'secret'), join(root, '.git', 'HEAD'));
    expect(await safeRead(root, '.git/HEAD')).toBeNull();
    symlinkSync(outside, join(root, '.git', 'refs', 'heads'));
    expect(await safeRead(root, '.git/refs/heads/secret')).toBeNull();
    expect(await safeRead(root, '.git/../../secret')).toBeNull();
  });

  it('never blocks on a FIFO and never reads a device', async () => {
    execFileSync('mkfifo', [join(root, '.git', 'HEAD')]);
    expect(await safeRead(root, '.git/HEAD')).toBeNull();
    symlinkSync('/dev/zero', join(root, '.git', 'packed-refs'));
    expect(await safeRead(root, '.git/packed-refs')).toBeNull();
  });

  it('returns null past the cap instead of buffering it', async () => {
    writeFileSync(join(root, '.git', 'index'), Buffer.alloc(4096));
    expect(await safeRead(root, '.git/index', 1024)).toBeNull();
    expect((await safeRead(root, '.git/index', 4096))?.length).toBe(4096);
  });

  it('isRealDir refuses a link at any level', async () => {
    symlinkSync(outside, join(root, '.git', 'objects'));
    expect(await isRealDir(root, '.git/objects')).toBe(false);
    expect(await isRealDir(root, '.git/refs')).toBe(true);
  });
});

describe('assertProjectPath (TOCTOU on the project directory)', () => {
  it('accepts the recorded real path and refuses it once swapped for a link, or when .git/objects is a link', async () => {
    const repo = join(root, 'repo');
    mkdirSync(join(repo, '.git', 'objects'), { recursive: true });
    await expect(assertProjectPath(repo)).resolves.toBeUndefined();
    rmSync(join(repo, '.git', 'objects'), { recursive: true });
    symlinkSync(outside, join(repo, '.git', 'objects'));
    await expect(assertProjectPath(repo)).rejects.toMatchObject({ code: 'PROJECT_PATH_CHANGED' });
    rmSync(repo, { recursive: true });
    mkdirSync(join(outside, '.git', 'objects'), { recursive: true });
    symlinkSync(outside, repo);
    await expect(assertProjectPath(repo)).rejects.toMatchObject({ code: 'PROJECT_PATH_CHANGED' });
  });
});

describe('assertOwnObjects (a project store that reads another)', () => {
  it('refuses alternates and links in objects/ or pack/, accepts a plain store', async () => {
    const objs = join(root, 'objects');
    mkdirSync(join(objs, 'info'), { recursive: true });
    mkdirSync(join(objs, 'pack'));
    await expect(assertOwnObjects(objs)).resolves.toBeUndefined();
    writeFileSync(join(objs, 'info', 'alternates'), '/elsewhere/objects\n');
    await expect(assertOwnObjects(objs)).rejects.toMatchObject({ code: 'PROJECT_OBJECTS_LINKED' });
    rmSync(join(objs, 'info', 'alternates'));
    symlinkSync(outside, join(objs, 'ab'));
    await expect(assertOwnObjects(objs)).rejects.toMatchObject({ code: 'PROJECT_OBJECTS_LINKED' });
    rmSync(join(objs, 'ab'));
    symlinkSync(join(outside, 'secret'), join(objs, 'pack', 'pack-x.pack'));
    await expect(assertOwnObjects(objs)).rejects.toMatchObject({ code: 'PROJECT_OBJECTS_LINKED' });
  });
});
