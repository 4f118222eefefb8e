import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, mkdir, rm } from 'node:fs/promises';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BerthClient, type Session } from '@berth/client-sdk';

export const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));
export const BERTHD_BIN = join(REPO_ROOT, 'daemon/bin/berthd.js');
export const BERTH_BIN = join(REPO_ROOT, 'client-sdk/bin/berth.js');

/** A short temp dir (socket paths must stay under 107 bytes); removed by the caller's cleanup. */
export async function tempDir(prefix = 'bt-'): Promise<string> {
  return mkdtemp(join(tmpdir(), prefix));
}

export interface DaemonOptions {
  /** Extra environment (PROJECTS_ROOT, DOCKER_HOST ...). */
  env?: Record<string, string>;
  args?: string[];
  home?: string;
  /** Wait for the socket to answer (default true). */
  waitReady?: boolean;
  /** Delete `home` when this daemon is disposed (a restart taking over an earlier daemon's home). */
  ownsHome?: boolean;
}

/**
 * A real berthd process on a real socket, in its own BERTH_HOME. `await using d = await startDaemon()`
 * stops it (SIGTERM) and deletes its home at the end of the scope.
 */
export class DaemonProcess implements AsyncDisposable {
  output = '';
  exitCode: number | null = null;
  private readonly exited: Promise<number | null>;
  private clientInstance: BerthClient | null = null;

  constructor(
    readonly proc: ChildProcess,
    readonly home: string,
    readonly socket: string,
    private readonly ownsHome: boolean,
  ) {
    proc.stdout!.setEncoding('utf8').on('data', (d: string) => (this.output += d));
    proc.stderr!.setEncoding('utf8').on('data', (d: string) => (this.output += d));
    this.exited = new Promise((resolve) =>
      proc.once('exit', (code, signal) => {
        this.exitCode = code ?? (signal ? 128 : null);
        resolve(this.exitCode);
      }),
    );
  }

  get pid(): number {
    return this.proc.pid!;
  }

  get client(): BerthClient {
    this.clientInstance ??= new BerthClient({ socketPath: this.socket, timeoutMs: 30_000 });
    return this.clientInstance;
  }

  /** Resolves with the exit code. */
  waitExit(timeoutMs = 20_000): Promise<number | null> {
    return Promise.race([
      this.exited,
      new Promise<number | null>((_, reject) =>
        setTimeout(() => reject(new Error(`berthd did not exit within ${timeoutMs * SLACK} ms\n${this.output}`)), timeoutMs * SLACK).unref(),
      ),
    ]);
  }

  async waitReady(timeoutMs = 20_000): Promise<void> {
    const deadline = Date.now() + timeoutMs * SLACK;
    while (Date.now() < deadline) {
      if (this.exitCode !== null) throw new Error(`berthd exited with ${this.exitCode}:\n${this.output}`);
      if (await httpOk(this.socket)) return;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`berthd not ready within ${timeoutMs * SLACK} ms:\n${this.output}`);
  }

  /** Waits until the daemon's output contains `text`. */
  async waitForLog(text: string | RegExp, timeoutMs = 20_000): Promise<void> {
    const deadline = Date.now() + timeoutMs * SLACK;
    const has = () => (typeof text === 'string' ? this.output.includes(text) : text.test(this.output));
    while (!has()) {
      if (Date.now() > deadline) throw new Error(`log never showed ${String(text)}:\n${this.output}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
    this.clientInstance?.close();
    this.clientInstance = null;
    if (this.exitCode === null) this.proc.kill(signal);
    return this.waitExit();
  }

  /** This daemon's engine identity (label `dev.berth.instance`), read from its database. */
  instanceId: string | null = null;

  async [Symbol.asyncDispose](): Promise<void> {
    if (this.exitCode === null) await this.stop('SIGTERM').catch(() => this.proc.kill('SIGKILL'));
    this.clientInstance?.close();
    try {
      await removeInstanceObjects(this.home);
    } finally {
      if (this.ownsHome) await rm(this.home, { recursive: true, force: true });
    }
  }
}

/** Removes every container, volume and network a test daemon (by its home's instance id) made. */
export async function removeInstanceObjects(home: string): Promise<void> {
  const { execFileSync } = await import('node:child_process');
  const { existsSync } = await import('node:fs');
  const db = join(home, 'berth.db');
  if (!existsSync(db)) return;
  let id = '';
  try {
    const Database = (await import('better-sqlite3')).default;
    const h = new Database(db, { readonly: true, fileMustExist: true });
    try {
      id = (h.prepare("SELECT value FROM meta WHERE key = 'instance_id'").get() as { value: string } | undefined)?.value ?? '';
    } finally {
      h.close();
    }
  } catch {
    return;
  }
  if (!id) return;
  const f = `label=dev.berth.instance=${id}`;
  const list = (...a: string[]) => execFileSync('docker', a, { encoding: 'utf8' }).split('\n').filter(Boolean);
  const quietly = (...a: string[]) => {
    try {
      execFileSync('docker', a, { stdio: 'ignore' });
    } catch {
      // best effort: what is left is taken by the next sweep
    }
  };
  const containers = list('ps', '-aq', '--filter', f);
  if (containers.length) quietly('rm', '-f', '-v', ...containers);
  const volumes = list('volume', 'ls', '-q', '--filter', f);
  if (volumes.length) quietly('volume', 'rm', '-f', ...volumes);
  // Networks last, once nothing is attached; a network another test's daemon is also tearing down
  // may already be gone.
  for (let attempt = 0; attempt < 5; attempt++) {
    const networks = list('network', 'ls', '-q', '--filter', f);
    if (!networks.length) break;
    for (const n of networks) quietly('network', 'rm', n);
    await new Promise((r) => setTimeout(r, 300));
  }
}

function httpOk(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const req = request({ socketPath, path: '/health/live', method: 'GET', timeout: 1000, agent: false }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.on('error', () => resolve(false));
    req.on('timeout', () => {
      req.destroy();
      resolve(false);
    });
    req.end();
  });
}

export function spawnDaemon(opts: DaemonOptions & { home: string; ownsHome?: boolean }): DaemonProcess {
  const socket = opts.env?.BERTH_SOCKET ?? join(opts.home, 'berth.sock');
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    HOME: opts.home,
    BERTH_HOME: opts.home,
    PROJECTS_ROOT: join(opts.home, 'projects'),
    AGENT_DEFAULT_IMAGE: process.env.BERTH_TEST_IMAGE ?? 'berth-test-busybox:latest',
    // Tests start many small sessions at once; the capacity cap has its own test.
    BERTH_MAX_RUNNING: '0',
    ...opts.env,
  };
  const proc = spawn(process.execPath, [BERTHD_BIN, ...(opts.args ?? [])], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  return new DaemonProcess(proc, opts.home, socket, opts.ownsHome ?? false);
}

export async function startDaemon(opts: DaemonOptions = {}): Promise<DaemonProcess> {
  const home = opts.home ?? (await tempDir());
  await mkdir(join(home, 'projects'), { recursive: true });
  const d = spawnDaemon({ ...opts, home, ownsHome: opts.ownsHome ?? opts.home === undefined });
  if (opts.waitReady !== false) {
    try {
      await d.waitReady();
    } catch (err) {
      await d[Symbol.asyncDispose]();
      throw err;
    }
  }
  return d;
}

/** POST a raw body to /rpc; returns the HTTP status and the parsed body (null when empty). */
export function rawRpc(
  socketPath: string,
  body: string | Buffer,
  headers: Record<string, string> = { 'content-type': 'application/json' },
): Promise<{ status: number; body: unknown; text: string }> {
  return new Promise((resolve, reject) => {
    let answered = false;
    const req = request({ socketPath, path: '/rpc', method: 'POST', headers, agent: false }, (res) => {
      answered = true;
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        resolve({ status: res.statusCode ?? 0, text, body: text ? JSON.parse(text) : null });
      });
      res.on('error', reject);
    });
    req.on('error', (err: NodeJS.ErrnoException) => {
      // A server refusing a body it will not read (413) answers and closes while we still write:
      // the answer may come in after our write failed.
      if (err.code === 'EPIPE' || err.code === 'ECONNRESET') setTimeout(() => answered || reject(err), 2000);
      else reject(err);
    });
    req.end(body);
  });
}

export function getJson(socketPath: string, path: string): Promise<{ status: number; body: unknown }> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, path, method: 'GET', agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(Buffer.concat(chunks).toString('utf8')) }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** The non-root owner test repositories get (agents run as the project's owner, never root). */
export const TEST_UID = 1000;

/** A real git repository with one commit, owned by TEST_UID unless `owner` says otherwise. */
export async function makeRepo(dir: string, opts: { owner?: number } = {}): Promise<string> {
  const { execFileSync } = await import('node:child_process');
  await mkdir(dir, { recursive: true });
  const git = (...a: string[]) => execFileSync('git', a, { cwd: dir, stdio: 'pipe' });
  git('init', '-q', '-b', 'main');
  git('-c', 'user.email=t@berth.dev', '-c', 'user.name=berth test', 'commit', '-q', '--allow-empty', '-m', 'init');
  const owner = opts.owner ?? TEST_UID;
  if (owner !== 0) execFileSync('chown', ['-R', `${owner}:${owner}`, dir]);
  return dir;
}

/**
 * A poll's deadline is for a hang, not for speed: each is stretched by BERTH_TEST_SLACK (default 3),
 * so a suite sharing two cores with other work waits longer instead of failing. Only a condition that
 * never comes costs the extra time.
 */
const SLACK = Number(process.env.BERTH_TEST_SLACK) || 3;

export async function poll<T>(fn: () => Promise<T | undefined | null | false>, timeoutMs = 20_000, what = 'condition'): Promise<T> {
  const deadline = Date.now() + timeoutMs * SLACK;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`);
}

/** A daemon with project `web` (a repo owned by TEST_UID) ready for sessions. */
export async function startWithProject(opts: DaemonOptions = {}, project = 'web'): Promise<{ d: DaemonProcess; repo: string }> {
  const d = await startDaemon(opts);
  const repo = await makeRepo(join(d.home, 'projects', project));
  await d.client.projects.add({ name: project, path: repo });
  try {
    const s = await d.client.daemon.status();
    d.instanceId = s.instanceId;
  } catch {
    // status is best effort here
  }
  return { d, repo };
}

/** Waits for a session's agent to finish (exited or failed); returns the session and its output. */
export async function finished(client: BerthClient, id: string, timeoutMs: number, what = 'the agent to finish'): Promise<{ session: Session; logs: string }> {
  const session = await poll(async () => {
    const x = await client.sessions.get({ id });
    return x.state === 'exited' || x.state === 'failed' ? x : null;
  }, timeoutMs, what);
  const logs = (await client.sessions.logs({ id })).map((l) => l.line).join('\n');
  return { session, logs };
}

/** `sh -c SCRIPT` as an agent command, for scripted test agents in the busybox image. */
export const sh = (script: string) => ['sh', '-c', script];
