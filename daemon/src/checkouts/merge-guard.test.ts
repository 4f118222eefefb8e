import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { untrackedInTheWay } from './merge-guard.js';

describe('untrackedInTheWay: what a merge would overwrite that git does not track', () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });
  /** A work tree with `files` (text) and `links` (name → target). */
  const tree = (files: Record<string, string>, links: Record<string, string> = {}) => {
    const d = mkdtempSync(join(tmpdir(), 'bt-guard-'));
    dirs.push(d);
    for (const [p, text] of Object.entries(files)) {
      mkdirSync(join(d, p, '..'), { recursive: true });
      writeFileSync(join(d, p), text);
    }
    for (const [p, target] of Object.entries(links)) {
      mkdirSync(join(d, p, '..'), { recursive: true });
      symlinkSync(target, join(d, p));
    }
    return d;
  };

  it('an ignored file where the branch adds one (.env) is in the way; a tracked one is not', async () => {
    const d = tree({ '.env': 'SECRET', 'README.md': 'x', 'src/a.ts': 'a' });
    expect(await untrackedInTheWay(d, ['.env', 'README.md', 'src/a.ts'], ['README.md', 'src/a.ts', '.gitignore'])).toEqual(['.env']);
  });

  it('nothing there at all (a new file, a new directory) is fine', async () => {
    const d = tree({ 'README.md': 'x' });
    expect(await untrackedInTheWay(d, ['new.txt', 'newdir/deep/file'], ['README.md'])).toEqual([]);
  });

  it('an ignored directory where the branch puts a file or a link (build -> /) is in the way; a new file inside an untracked directory is not, one over an untracked file in it is', async () => {
    const d = tree({ 'build/cache.db': 'data', 'out/x': 'y' });
    expect(await untrackedInTheWay(d, ['build', 'out/new.txt'], [])).toEqual(['build']);
    expect(await untrackedInTheWay(d, ['out/x'], [])).toEqual(['out/x']);
  });

  it('a link standing on the way to a changed path (untracked link to a directory) is in the way, never followed', async () => {
    const target = tree({ 'victim.txt': 'keep' });
    const d = tree({ 'README.md': 'x' }, { wt: target });
    expect(await untrackedInTheWay(d, ['wt/victim.txt'], ['README.md'])).toEqual(['wt']);
  });

  it('a tracked directory turned into a file by the branch: in the way only if it holds untracked or ignored files', async () => {
    const clean = tree({ 'lib/a.js': 'a', 'lib/sub/b.js': 'b' });
    expect(await untrackedInTheWay(clean, ['lib', 'lib/a.js', 'lib/sub/b.js'], ['lib/a.js', 'lib/sub/b.js'])).toEqual([]);
    const dirty = tree({ 'lib/a.js': 'a', 'lib/sub/b.js': 'b', 'lib/sub/local.log': 'mine' });
    expect(await untrackedInTheWay(dirty, ['lib', 'lib/a.js', 'lib/sub/b.js'], ['lib/a.js', 'lib/sub/b.js'])).toEqual(['lib/sub/local.log']);
  });

  it('a tracked link the branch replaces by a directory is not looked through, however many changed paths lie under it', async () => {
    const outside = tree({ 'tmp/x': 'host file' });
    const d = tree({}, { wt: outside, other: '..' });
    expect(await untrackedInTheWay(d, ['wt', 'wt/tmp/keep.txt', 'wt/tmp/x', 'other', 'other/a', 'other/b/c'], ['wt', 'other'])).toEqual([]);
  });

  it('a tracked path replaced by a link in the work tree is taken for what git tracks (git sees the change; the main checkout is clean before a merge)', async () => {
    const d = tree({ 'src/a.ts': 'a' });
    expect(await untrackedInTheWay(d, ['src/a.ts', 'src/b.ts'], ['src/a.ts'])).toEqual([]);
  });
});
