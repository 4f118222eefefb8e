import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { deflateSync } from 'node:zlib';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Shadows, readRef } from './shadow.js';

const g = (cwd: string, ...args: string[]) =>
  execFileSync('git', ['-c', 'user.name=t', '-c', 'user.email=t@t', ...args], { cwd, encoding: 'utf8', env: { PATH: process.env.PATH, HOME: '/nonexistent', GIT_CONFIG_NOSYSTEM: '1' } }).trim();

let tmp: string;
let clone: string;
let other: string;
beforeEach(() => {
  tmp = mkdtempSync(join(tmpdir(), 'bt-shadow-'));
  clone = join(tmp, 'clone');
  other = join(tmp, 'other');
  for (const d of [clone, other]) {
    mkdirSync(d);
    g(d, 'init', '-q', '-b', 'main');
  }
  writeFileSync(join(other, 'private.txt'), 'PRIVATE-OF-B\n');
  g(other, 'add', '-A');
  g(other, 'commit', '-qm', 'b');
  writeFileSync(join(clone, 'a.txt'), 'a\n');
  g(clone, 'add', '-A');
  g(clone, 'commit', '-qm', 'a');
});
afterEach(() => rmSync(tmp, { recursive: true, force: true }));

describe('the shadow mirror of an agent object store', () => {
  it('copies loose objects and packs, and nothing reached through a link, a FIFO or objects/info', async () => {
    const blobB = g(other, 'rev-parse', 'HEAD:private.txt');
    const objs = join(clone, '.git', 'objects');
    // Another project's object planted as a link, a FIFO posing as an object, alternates and a
    // commit-graph pointing at a device.
    mkdirSync(join(objs, blobB.slice(0, 2)), { recursive: true });
    symlinkSync(join(other, '.git', 'objects', blobB.slice(0, 2), blobB.slice(2)), join(objs, blobB.slice(0, 2), blobB.slice(2)));
    mkdirSync(join(objs, 'ff'), { recursive: true });
    execFileSync('mkfifo', [join(objs, 'ff', 'f'.repeat(38))]);
    writeFileSync(join(objs, 'info', 'alternates'), `${join(other, '.git', 'objects')}\n/dev/zero\n`);
    symlinkSync('/dev/zero', join(objs, 'info', 'commit-graph'));
    symlinkSync(join(other, '.git', 'objects'), join(objs, 'ee'));

    const dest = join(tmp, 'mirror');
    mkdirSync(dest);
    await new Shadows(join(tmp, 'home')).mirror(clone, dest);
    const copied = readdirSync(dest).flatMap((d) => readdirSync(join(dest, d)).map((f) => `${d}${f}`));
    expect(copied).toContain(g(clone, 'rev-parse', 'HEAD'));
    expect(copied).not.toContain(blobB);
    expect(copied).not.toContain(`ff${'f'.repeat(38)}`);
    expect(existsSync(join(dest, 'info'))).toBe(false);
    expect(existsSync(join(dest, 'ee'))).toBe(false);

    // After the agent packs its objects, the mirror follows: packs in, loose copies out.
    rmSync(join(objs, blobB.slice(0, 2)), { recursive: true });
    rmSync(join(objs, 'ff'), { recursive: true });
    rmSync(join(objs, 'ee'));
    rmSync(join(objs, 'info', 'alternates'));
    g(clone, 'repack', '-adq');
    g(clone, 'prune-packed');
    await new Shadows(join(tmp, 'home')).mirror(clone, dest);
    expect(readdirSync(join(dest, 'pack')).some((f) => f.endsWith('.pack'))).toBe(true);
    expect(readdirSync(join(dest, 'pack')).some((f) => f.endsWith('.idx'))).toBe(true);
  });

  it('takes no object the project has under an id: a loose object planted under a base blob\'s id is left out, and packs get berth\'s own index, not the agent\'s', async () => {
    const base = g(clone, 'rev-parse', 'HEAD:a.txt');
    const objs = join(clone, '.git', 'objects');
    // The agent's own object for the base blob's id, holding other content (it can write its store).
    const forged = deflateSync(Buffer.from('blob 9\0curl | sh'));
    rmSync(join(objs, base.slice(0, 2), base.slice(2)), { force: true });
    mkdirSync(join(objs, base.slice(0, 2)), { recursive: true });
    writeFileSync(join(objs, base.slice(0, 2), base.slice(2)), forged);
    writeFileSync(join(clone, 'b.txt'), 'b\n');
    g(clone, 'add', 'b.txt');
    const honest = g(clone, 'rev-parse', ':b.txt');
    const dest = join(tmp, 'mirror');
    mkdirSync(dest);
    mkdirSync(join(tmp, 'home'));
    // `other` stands for the project: it holds the genuine object under that id.
    writeFileSync(join(other, 'a.txt'), 'a\n');
    g(other, 'add', 'a.txt');
    await new Shadows(join(tmp, 'home')).mirror(clone, dest, join(other, '.git', 'objects'));
    expect(existsSync(join(dest, base.slice(0, 2), base.slice(2)))).toBe(false);
    expect(existsSync(join(dest, honest.slice(0, 2), honest.slice(2)))).toBe(true);

    // A pack with an index the agent forged: the mirror's index is the one git makes from the pack.
    rmSync(join(objs, base.slice(0, 2)), { recursive: true });
    g(clone, 'hash-object', '-w', 'a.txt');
    g(clone, 'repack', '-adq');
    const packDir = join(objs, 'pack');
    const idx = readdirSync(packDir).find((f) => f.endsWith('.idx'))!;
    writeFileSync(join(packDir, idx), Buffer.concat([Buffer.from([0xff, 0x74, 0x4f, 0x63]), Buffer.alloc(2048, 1)]));
    await new Shadows(join(tmp, 'home')).mirror(clone, dest);
    const mirrored = readFileSync(join(dest, 'pack', idx));
    expect(mirrored.subarray(4, 12).equals(Buffer.alloc(8, 1))).toBe(false);
    const env = { PATH: process.env.PATH, HOME: '/nonexistent', GIT_CONFIG_NOSYSTEM: '1' };
    execFileSync('git', ['verify-pack', join(dest, 'pack', idx)], { env });
  });

  it('reads refs only as 40-hex ids from files that are not links', async () => {
    const head = g(clone, 'rev-parse', 'HEAD');
    expect(await readRef(clone, 'refs/heads/main')).toBe(head);
    expect(await readRef(clone, 'refs/heads/../../x')).toBeNull();
    rmSync(join(clone, '.git', 'refs', 'heads', 'main'));
    symlinkSync(join(other, '.git', 'refs', 'heads', 'main'), join(clone, '.git', 'refs', 'heads', 'main'));
    expect(await readRef(clone, 'refs/heads/main')).toBeNull();
  });

  it('copies no sparse file and nothing that does not start as an object or a pack', async () => {
    const objs = join(clone, '.git', 'objects');
    mkdirSync(join(objs, 'pack'), { recursive: true });
    execFileSync('truncate', ['-s', '1G', join(objs, 'pack', `pack-${'a'.repeat(40)}.pack`)]);
    writeFileSync(join(objs, 'pack', `pack-${'b'.repeat(40)}.pack`), 'not a pack at all');
    mkdirSync(join(objs, 'aa'), { recursive: true });
    writeFileSync(join(objs, 'aa', 'a'.repeat(38)), 'plain text, not zlib');
    const dest = join(tmp, 'mirror');
    mkdirSync(dest);
    await new Shadows(join(tmp, 'home')).mirror(clone, dest);
    expect(existsSync(join(dest, 'pack'))).toBe(false);
    expect(existsSync(join(dest, 'aa'))).toBe(false);
  });

  it('finds a ref in a packed-refs of millions of lines without splitting it', async () => {
    const head = g(clone, 'rev-parse', 'HEAD');
    rmSync(join(clone, '.git', 'refs', 'heads', 'main'));
    writeFileSync(join(clone, '.git', 'packed-refs'), `${'\n'.repeat(20_000_000)}${head} refs/heads/main\n`);
    expect(await readRef(clone, 'refs/heads/main')).toBe(head);
    expect(await readRef(clone, 'refs/heads/mai')).toBeNull();
  });
});
