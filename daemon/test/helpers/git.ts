import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

/** git on the host, as the test (root) sees repositories owned by the test uid. */
export function hostGit(cwd: string, ...args: string[]): string {
  return execFileSync('git', ['-c', 'safe.directory=*', '-c', 'user.email=t@berth.dev', '-c', 'user.name=berth test', ...args], {
    cwd,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { PATH: process.env.PATH, HOME: '/nonexistent', GIT_CONFIG_NOSYSTEM: '1' },
  }).trim();
}

/** Commits `files` (path → content) on the current branch of `cwd`, as the repo's owner would. */
export function commitFiles(cwd: string, files: Record<string, string>, message: string, owner = 1000): string {
  for (const [p, c] of Object.entries(files)) {
    mkdirSync(dirname(join(cwd, p)), { recursive: true });
    writeFileSync(join(cwd, p), c);
  }
  hostGit(cwd, 'add', '-A');
  hostGit(cwd, 'commit', '-q', '-m', message);
  execFileSync('chown', ['-R', `${owner}:${owner}`, cwd]);
  return hostGit(cwd, 'rev-parse', 'HEAD');
}
