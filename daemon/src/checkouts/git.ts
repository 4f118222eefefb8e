import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { simpleGit } from 'simple-git';

/**
 * git as berthd runs it. Hooks, fsmonitor, pagers, prompts, credential helpers, external diff and
 * textconv are off on every call; configuration from outside the repository (system, global) is not
 * read. Repositories an agent can write are never run as themselves: see checkouts/manager.ts.
 */
export const HARDENED_GIT_CONFIG = [
  'core.hooksPath=/dev/null',
  'core.fsmonitor=false',
  'core.untrackedCache=false',
  'core.pager=cat',
  'core.askPass=',
  'credential.helper=',
  'protocol.ext.allow=never',
  'diff.external=',
  'gc.auto=0',
  'maintenance.auto=false',
];

export interface GitCall {
  /** Working directory of the git process. */
  cwd: string;
  env?: Record<string, string>;
  /** Extra `-c key=value` entries. */
  config?: string[];
  timeoutMs?: number;
  /**
   * Run as this user (berthd as root making files for the project's owner): what git writes is
   * theirs from the start. Runs without berthd's global config, which only root can read.
   */
  as?: { uid: number; gid: number } | null;
}

/**
 * berthd's own "global" git config, in place of the user's: the only place git honours
 * `safe.directory` from (berthd works on repositories other users own, by design).
 */
const GLOBAL_CONFIG = ['[safe]', '\tdirectory = *', '[core]', '\thooksPath = /dev/null', '\tfsmonitor = false', '[protocol "ext"]', '\tallow = never', ''].join('\n');
let globalConfigPath: string | null = null;

/** Where berthd keeps that file (main sets `$BERTH_HOME/gitconfig`); written now. */
export function setGitGlobalConfig(path: string): void {
  writeFileSync(path, GLOBAL_CONFIG, { mode: 0o600 });
  globalConfigPath = path;
}

function globalConfig(): string {
  if (!globalConfigPath) {
    // Outside berthd (tests, benches using git() directly): a private file, gone when the process ends.
    const dir = mkdtempSync(join(tmpdir(), 'berth-git-'));
    process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
    setGitGlobalConfig(join(dir, 'gitconfig'));
  }
  return globalConfigPath!;
}

/** A minimal environment: nothing from berthd's own environment leaks into git's config lookup. */
export function gitEnv(extra: Record<string, string> = {}): Record<string, string> {
  return {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: '/nonexistent',
    GIT_TERMINAL_PROMPT: '0',
    GIT_CONFIG_NOSYSTEM: '1',
    GIT_CONFIG_GLOBAL: globalConfig(),
    GIT_OPTIONAL_LOCKS: '0',
    LC_ALL: 'C',
    ...extra,
  };
}

/** Runs `git args...` hardened; resolves stdout. Rejects with git's stderr in the message. */
export async function git(args: string[], call: GitCall): Promise<string> {
  const g = simpleGit({
    baseDir: call.cwd,
    config: [...HARDENED_GIT_CONFIG, 'safe.directory=*', ...(call.config ?? [])],
    timeout: { block: call.timeoutMs ?? 120_000 },
    ...(call.as ? { spawnOptions: { uid: call.as.uid, gid: call.as.gid } } : {}),
    maxConcurrentProcesses: 16,
    // simple-git's default only fails a command that wrote to stderr; a non-zero exit is a failure
    // whatever it printed (a quiet `merge` that conflicts, `merge-base --is-ancestor`).
    errors: (error, result) => {
      if (error) return error;
      if (result.exitCode === 0) return undefined;
      return Buffer.concat([...result.stdOut, ...result.stdErr, Buffer.from(`\n(exit ${result.exitCode})`)]);
    },
    // simple-git refuses these keys to protect callers that pass user input into config; ours are
    // constants that switch the dangerous features *off*, so they are allowed explicitly.
    unsafe: {
      allowUnsafeHooksPath: true,
      allowUnsafeFsMonitor: true,
      allowUnsafePager: true,
      allowUnsafeAskPass: true,
      allowUnsafeCredentialHelper: true,
      allowUnsafeProtocolOverride: true,
      allowUnsafeDiffExternal: true,
      allowUnsafeConfigPaths: true,
      allowUnsafeSshCommand: true,
    },
  }).env(call.as ? { ...gitEnv(call.env), GIT_CONFIG_GLOBAL: '/dev/null' } : gitEnv(call.env));
  return g.raw(args);
}

export function gitAt(dir: string) {
  return { raw: (args: string[]) => git(args, { cwd: dir }) };
}

/**
 * The repository's top directory if `dir` is inside a non-bare work tree, else null.
 */
export async function workTreeTop(dir: string): Promise<string | null> {
  try {
    const top = (await git(['rev-parse', '--show-toplevel'], { cwd: dir })).trim();
    return top || null;
  } catch {
    return null;
  }
}
