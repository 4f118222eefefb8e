import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { GIT_LIMITS, git, gitCapped, gitEnv } from './git.js';

let repo: string;
beforeEach(() => {
  repo = mkdtempSync(join(tmpdir(), 'bt-git-'));
  execFileSync('git', ['init', '-q', repo]);
});
afterEach(() => rmSync(repo, { recursive: true, force: true }));

/** git processes whose working directory is `dir` (what a hung git would leave). */
function gitsIn(dir: string): number {
  let n = 0;
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      if (readFileSync(`/proc/${pid}/comm`, 'utf8').trim().startsWith('git') && execFileSync('readlink', [`/proc/${pid}/cwd`], { encoding: 'utf8' }).trim() === dir) n++;
    } catch {
      // gone
    }
  }
  return n;
}

describe('bounded git', () => {
  it('stops reading at the cap and kills git, leaving no git process behind', async () => {
    // `git cat-file --batch` on an endless stdin-driven stream would be ideal; `git log` of a repo
    // with many commits is simpler: its output is far over 1 KiB.
    for (let i = 0; i < 50; i++) execFileSync('git', ['-c', 'user.name=t', '-c', 'user.email=t@t', 'commit', '-q', '--allow-empty', '-m', `commit ${i} ${'x'.repeat(200)}`], { cwd: repo });
    const r = await gitCapped(['log'], { cwd: repo }, 1024);
    expect(r.truncated).toBe(true);
    expect(r.out.length).toBe(1024);
    expect(gitsIn(repo)).toBe(0);
  });

  it('a git that blocks (reading a FIFO) is killed at its deadline, whole process group included', async () => {
    execFileSync('mkfifo', [join(repo, 'fifo')]);
    // hash-object opens the FIFO and waits for a writer that never comes.
    const err = await git(['hash-object', 'fifo'], { cwd: repo, timeoutMs: 1000 }).then(
      () => null,
      (e: unknown) => e as Error,
    );
    expect(err).toBeInstanceOf(Error);
    expect(gitsIn(repo)).toBe(0);
  });

  it('runs with an address-space limit and no more than the configured number at once', async () => {
    const limits = await git(['-c', 'alias.x=!cat /proc/$$/limits', 'x'], { cwd: repo }).catch(() => '');
    // prlimit is present on Linux (util-linux); the alias shows the limit git itself runs under.
    if (limits) expect(limits).toMatch(new RegExp(`Max address space\\s+${GIT_LIMITS.memoryBytes}`));
    const all = await Promise.all(Array.from({ length: 20 }, () => git(['rev-parse', '--git-dir'], { cwd: repo })));
    expect(all.every((x) => x.trim() === '.git')).toBe(true);
  });
});

describe("berth's git config outside berthd (tests, benches)", () => {
  it('comes through the environment: hooks never run, and no temp file is left behind', async () => {
    execFileSync('sh', ['-c', `mkdir -p "${repo}/.git/hooks" && printf '#!/bin/sh\\ntouch "${repo}/hooked"\\n' > "${repo}/.git/hooks/post-checkout" && chmod +x "${repo}/.git/hooks/post-checkout"`]);
    expect(await git(['config', '--get', 'core.hooksPath'], { cwd: repo })).toBe('/dev/null\n');
    await git(['-c', 'user.email=t@t', '-c', 'user.name=t', 'commit', '-q', '--allow-empty', '-m', 'x'], { cwd: repo });
    await git(['checkout', '-q', '-b', 'other'], { cwd: repo });
    expect(readdirSync(repo)).not.toContain('hooked');
    // No file: a test runner's workers end by signal, and a temp file made for them would stay.
    expect(gitEnv().GIT_CONFIG_GLOBAL).toBe('/dev/null');
    expect(gitEnv()).toMatchObject({ GIT_CONFIG_COUNT: '4', GIT_CONFIG_KEY_0: 'safe.directory' });
  });
});
