import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants, writeFileSync } from 'node:fs';
import { delimiter, join } from 'node:path';

/**
 * git as berthd runs it. Hooks, fsmonitor, pagers, prompts, credential helpers, external diff and
 * textconv are off on every call; configuration from outside the repository (system, global) is not
 * read. Repositories an agent can write are never run as themselves: see checkouts/shadow.ts.
 *
 * Memory knobs keep git inside the address-space bound below on repositories of any size.
 */
export const HARDENED_GIT_CONFIG = [
  'core.hooksPath=/dev/null',
  'core.fsmonitor=false',
  'core.untrackedCache=false',
  'core.pager=cat',
  'core.askPass=',
  'core.editor=false',
  'sequence.editor=false',
  'credential.helper=',
  'protocol.ext.allow=never',
  'diff.external=',
  'gc.auto=0',
  'maintenance.auto=false',
  'commit.gpgSign=false',
  'tag.gpgSign=false',
  'core.packedGitLimit=512m',
  'core.packedGitWindowSize=128m',
  'core.deltaBaseCacheLimit=64m',
  'pack.windowMemory=128m',
  'pack.threads=1',
];

/**
 * Bounds on every git child, enforced outside berthd so they hold when berthd is killed: a wall
 * clock (coreutils `timeout`, which kills git's whole process group) and an address-space limit
 * (util-linux `prlimit`). Where a tool is missing (macOS), the bound it gives is absent and the
 * in-process timeout remains.
 */
export const GIT_LIMITS = {
  /** Address space of one git process: a 600 MB file or a sparse index cannot grow it past this. */
  memoryBytes: 3 * 1024 ** 3,
  defaultTimeoutMs: 120_000,
  /** stdout a plain `git()` call may return; streams have their own caps. */
  maxOutputBytes: 64 * 1024 * 1024,
  /** git children at once: fifty agents' status calls queue instead of starting fifty gits. */
  concurrency: 8,
};

/** Counting semaphore whose acquire(n) takes n slots at once (a pipe needs two), in FIFO order. */
class Slots {
  private used = 0;
  private readonly waiting: { n: number; go: () => void }[] = [];
  constructor(private readonly size: number) {}

  async acquire(n: number): Promise<() => void> {
    if (!this.waiting.length && this.used + n <= this.size) this.used += n;
    else await new Promise<void>((go) => this.waiting.push({ n, go }));
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.used -= n;
      while (this.waiting.length && this.used + this.waiting[0]!.n <= this.size) {
        const next = this.waiting.shift()!;
        this.used += next.n;
        next.go();
      }
    };
  }
}
const slots = new Slots(GIT_LIMITS.concurrency);

export interface GitCall {
  /** Working directory of the git process. */
  cwd: string;
  env?: Record<string, string>;
  /** Extra `-c key=value` entries. */
  config?: string[];
  timeoutMs?: number;
  /**
   * Run as this user (berthd as root working for the project's owner): what git writes is theirs,
   * and whatever the owner's repository configuration runs, runs as them. Runs without berthd's
   * global config, which only root can read.
   */
  as?: { uid: number; gid: number } | null;
  /** Written to git's stdin. */
  input?: string | Buffer;
}

export class GitError extends Error {
  constructor(
    message: string,
    readonly exitCode: number | null,
    readonly stderr: string,
  ) {
    super(message);
  }
}

/**
 * berthd's own "global" git config, in place of the user's: the only place git honours
 * `safe.directory` from (berthd works on repositories other users own, by design).
 */
const GLOBAL_CONFIG: [string, string][] = [
  ['safe.directory', '*'],
  ['core.hooksPath', '/dev/null'],
  ['core.fsmonitor', 'false'],
  ['protocol.ext.allow', 'never'],
];
let globalConfigPath: string | null = null;

/** Where berthd keeps that file (main sets `$BERTH_HOME/gitconfig`); written now. */
export function setGitGlobalConfig(path: string): void {
  const text = GLOBAL_CONFIG.map(([k, v]) => {
    const dot = k.lastIndexOf('.');
    const [section, sub] = k.slice(0, dot).split('.') as [string, string | undefined];
    return `[${section}${sub ? ` "${sub}"` : ''}]\n\t${k.slice(dot + 1)} = ${v}\n`;
  });
  writeFileSync(path, text.join(''), { mode: 0o600 });
  globalConfigPath = path;
}

/** What git is told of that config: the file berthd wrote or, outside berthd (tests, benches calling git() directly), the same keys through the environment, with no file to leave behind. */
function globalConfigEnv(): Record<string, string> {
  if (globalConfigPath) return { GIT_CONFIG_GLOBAL: globalConfigPath };
  const env: Record<string, string> = { GIT_CONFIG_GLOBAL: '/dev/null', GIT_CONFIG_COUNT: String(GLOBAL_CONFIG.length) };
  GLOBAL_CONFIG.forEach(([k, v], i) => {
    env[`GIT_CONFIG_KEY_${i}`] = k;
    env[`GIT_CONFIG_VALUE_${i}`] = v;
  });
  return env;
}

/** The environment of a git run as a project's owner: none of berthd's own config (see projectCall). */
function ownerEnv(env: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = { ...env, GIT_CONFIG_GLOBAL: '/dev/null' };
  for (const k of Object.keys(out)) if (k === 'GIT_CONFIG_COUNT' || k.startsWith('GIT_CONFIG_KEY_') || k.startsWith('GIT_CONFIG_VALUE_')) delete out[k];
  return out;
}

/** A minimal environment: nothing from berthd's own environment leaks into git's config lookup. */
export function gitEnv(extra: Record<string, string> = {}): Record<string, string> {
  return {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: '/nonexistent',
    GIT_TERMINAL_PROMPT: '0',
    GIT_CONFIG_NOSYSTEM: '1',
    ...globalConfigEnv(),
    GIT_OPTIONAL_LOCKS: '0',
    LC_ALL: 'C',
    ...extra,
  };
}

let tools: { timeout: string | null; prlimit: string | null } | null = null;
function findTool(name: string): string | null {
  for (const dir of (process.env.PATH ?? '/usr/bin:/bin').split(delimiter)) {
    const p = join(dir, name);
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch {
      // next
    }
  }
  return null;
}

/** Kills of the git process groups running now: none outlives a berthd that exits (a kill -9 leaves them to `timeout`). */
const live = new Set<() => void>();
process.once('exit', () => {
  for (const kill of live) kill();
});

/** The argv that runs `git args` under the bounds. */
function boundedArgv(args: string[], call: GitCall): string[] {
  tools ??= { timeout: findTool('timeout'), prlimit: findTool('prlimit') };
  const timeoutSec = Math.ceil((call.timeoutMs ?? GIT_LIMITS.defaultTimeoutMs) / 1000);
  const config = [...HARDENED_GIT_CONFIG, 'safe.directory=*', ...(call.config ?? [])].flatMap((c) => ['-c', c]);
  const argv = ['git', ...config, ...args];
  if (tools.prlimit) argv.unshift(tools.prlimit, `--as=${GIT_LIMITS.memoryBytes}`, '--');
  if (tools.timeout) argv.unshift(tools.timeout, '--kill-after=5', String(timeoutSec));
  return argv;
}

/**
 * Starts a bounded git child in its own process group. The caller reads its streams; `kill()` on
 * the returned handle ends the whole group (git and anything it started).
 */
export function gitSpawn(args: string[], call: GitCall): { child: ChildProcess; kill: () => void; done: Promise<{ code: number | null; stderr: string }> } {
  const [cmd, ...argv] = boundedArgv(args, call);
  const env = call.as ? ownerEnv(gitEnv(call.env)) : gitEnv(call.env);
  const child = spawn(cmd!, argv, {
    cwd: call.cwd,
    env,
    detached: true,
    stdio: ['pipe', 'pipe', 'pipe'],
    ...(call.as ? { uid: call.as.uid, gid: call.as.gid } : {}),
  });
  const kill = () => {
    try {
      if (child.pid) process.kill(-child.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  };
  live.add(kill);
  // A deadline in berthd too: the external `timeout` also covers berthd dying.
  const timer = setTimeout(kill, (call.timeoutMs ?? GIT_LIMITS.defaultTimeoutMs) + 10_000);
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (d: string) => {
    stderr = (stderr + d).slice(-8192);
  });
  child.stdin!.on('error', () => {});
  if (call.input !== undefined) child.stdin!.end(call.input);
  const done = new Promise<{ code: number | null; stderr: string }>((resolve) => {
    child.once('error', (err) => {
      clearTimeout(timer);
      live.delete(kill);
      resolve({ code: null, stderr: `${stderr}\n${err.message}` });
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      live.delete(kill);
      resolve({ code: code ?? (signal ? 128 : null), stderr });
    });
  });
  return { child, kill, done };
}

/**
 * Runs a bounded git and returns at most `maxBytes` of its stdout; past that, git is killed and the
 * result says `truncated` (nothing past the cap is ever buffered).
 */
export async function gitCapped(args: string[], call: GitCall, maxBytes: number): Promise<{ out: Buffer; truncated: boolean }> {
  const release = await slots.acquire(1);
  try {
    return await capped(args, call, maxBytes);
  } finally {
    release();
  }
}

async function capped(args: string[], call: GitCall, maxBytes: number): Promise<{ out: Buffer; truncated: boolean }> {
  const g = gitSpawn(args, call);
  const chunks: Buffer[] = [];
  let size = 0;
  let truncated = false;
  g.child.stdout!.on('data', (b: Buffer) => {
    if (truncated) return;
    if (size + b.length > maxBytes) {
      chunks.push(b.subarray(0, maxBytes - size));
      size = maxBytes;
      truncated = true;
      g.kill();
      return;
    }
    chunks.push(b);
    size += b.length;
  });
  const { code, stderr } = await g.done;
  if (!truncated && code !== 0) throw failure(args, code, stderr, Buffer.concat(chunks).toString('utf8'));
  return { out: Buffer.concat(chunks), truncated };
}

function failure(args: string[], code: number | null, stderr: string, stdout = ''): GitError {
  const why = code === 124 || code === 137 ? ' (killed: over its time or memory bound)' : '';
  return new GitError(`git ${args[0]} failed${why}: ${`${stdout}\n${stderr}`.trim()}\n(exit ${code})`, code, stderr);
}

/** Runs `git args...` bounded and hardened; resolves stdout. Rejects with git's stderr in the message. */
export async function git(args: string[], call: GitCall): Promise<string> {
  const { out, truncated } = await gitCapped(args, call, GIT_LIMITS.maxOutputBytes);
  if (truncated) throw new GitError(`git ${args[0]} printed more than ${GIT_LIMITS.maxOutputBytes} bytes`, null, '');
  return out.toString('utf8');
}

/**
 * `producer | consumer`, both bounded: e.g. `pack-objects --stdout` in berthd's shadow piped into
 * `index-pack --stdin` run as the project's owner. Resolves the consumer's stdout.
 */
export async function gitPipe(producer: { args: string[]; call: GitCall }, consumer: { args: string[]; call: GitCall }): Promise<string> {
  const release = await slots.acquire(2);
  try {
    return await pipe(producer, consumer);
  } finally {
    release();
  }
}

async function pipe(producer: { args: string[]; call: GitCall }, consumer: { args: string[]; call: GitCall }): Promise<string> {
  const p = gitSpawn(producer.args, producer.call);
  const c = gitSpawn(consumer.args, consumer.call);
  p.child.stdout!.pipe(c.child.stdin!);
  let out = '';
  c.child.stdout!.setEncoding('utf8').on('data', (d: string) => {
    out = (out + d).slice(-65536);
  });
  const [pr, cr] = await Promise.all([
    p.done.then((r) => {
      if (r.code !== 0) c.kill();
      return r;
    }),
    c.done.then((r) => {
      if (r.code !== 0) p.kill();
      return r;
    }),
  ]);
  if (pr.code !== 0) throw failure(producer.args, pr.code, pr.stderr);
  if (cr.code !== 0) throw failure(consumer.args, cr.code, cr.stderr);
  return out;
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
