import { simpleGit, type SimpleGit } from 'simple-git';

/**
 * git as berthd runs it on repositories it does not fully trust: never the repository's hooks,
 * fsmonitor or pager, and no prompts. Later issues extend this with explicit git/work dirs.
 */
export const HARDENED_GIT_CONFIG = [
  'core.hooksPath=/dev/null',
  'core.fsmonitor=false',
  'core.pager=cat',
  'core.askPass=',
  'credential.helper=',
  'protocol.ext.allow=never',
];

export function gitAt(dir: string, extraConfig: string[] = []): SimpleGit {
  return simpleGit({
    baseDir: dir,
    config: [...HARDENED_GIT_CONFIG, `safe.directory=${dir}`, ...extraConfig],
    timeout: { block: 30_000 },
    // simple-git refuses these keys to protect callers that pass user input into config; ours are
    // constants that switch the dangerous features *off*, so they are allowed explicitly.
    unsafe: {
      allowUnsafeHooksPath: true,
      allowUnsafeFsMonitor: true,
      allowUnsafePager: true,
      allowUnsafeAskPass: true,
      allowUnsafeCredentialHelper: true,
      allowUnsafeProtocolOverride: true,
    },
  }).env({ ...gitEnv() });
}

/** A minimal environment: nothing from berthd's own environment leaks into git's config lookup. */
function gitEnv(): Record<string, string> {
  return {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: process.env.HOME ?? '/nonexistent',
    GIT_TERMINAL_PROMPT: '0',
    GIT_CONFIG_NOSYSTEM: '1',
    LC_ALL: 'C',
  };
}

/**
 * The repository's top directory if `dir` is inside a non-bare work tree, else null.
 */
export async function workTreeTop(dir: string): Promise<string | null> {
  try {
    const top = (await gitAt(dir).revparse(['--show-toplevel'])).trim();
    return top || null;
  } catch {
    return null;
  }
}
