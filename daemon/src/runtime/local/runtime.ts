import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, readdir, rm, stat, writeFile, open } from 'node:fs/promises';
import { constants as osConstants } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BerthError, type LogLine } from '@berth/client-sdk/protocol';
import { LABELS } from '../labels.js';
import type {
  BuildRequest,
  ContainerObservation,
  ContainerRuntime,
  ContainerSpec,
  ContainerSummary,
  EngineInfo,
  ExecOutput,
  ExecRequest,
  ExecSession,
  ImageInfo,
  ImageRecord,
  RuntimeEvent,
} from '../port.js';

interface Meta {
  id: string;
  name: string;
  labels: Record<string, string>;
  command: string[];
  env: Record<string, string>;
  cwd: string;
  createdAt: string;
}

const SUPERVISOR = fileURLToPath(new URL('./supervise.js', import.meta.url));

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

const readJson = async <T>(file: string): Promise<T | null> => {
  try {
    return JSON.parse(await readFile(file, 'utf8')) as T;
  } catch {
    return null;
  }
};

/**
 * AGENT_MODE=local: the same port, with each "container" a detached supervisor process running the
 * agent in the session's checkout as berthd's own user. No isolation, no limits: an escape hatch for
 * machines without Docker. Agents outlive a daemon restart, and are adopted like containers are.
 */
export class LocalRuntime implements ContainerRuntime {
  readonly host = 'local processes (no isolation)';
  private readonly root: string;
  private readonly volumes: string;

  constructor(home: string) {
    this.root = join(home, 'local', 'containers');
    this.volumes = join(home, 'local', 'volumes');
  }

  async info(): Promise<EngineInfo> {
    return { version: `node ${process.version}`, apiVersion: 'local' };
  }

  async runtimes(): Promise<string[]> {
    return ['local'];
  }

  /** Images do not apply to local agents: every reference "exists". */
  async image(ref: string): Promise<ImageInfo | null> {
    return { id: 'local', tags: [ref], sizeBytes: 0, createdAt: new Date(0).toISOString() };
  }

  private dir(id: string): string {
    return join(this.root, id);
  }

  private async metas(): Promise<Meta[]> {
    let ids: string[];
    try {
      ids = await readdir(this.root);
    } catch {
      return [];
    }
    const out: Meta[] = [];
    for (const id of ids) {
      const m = await readJson<Meta>(join(this.dir(id), 'meta.json'));
      if (m) out.push(m);
    }
    return out;
  }

  private async observe(m: Meta): Promise<ContainerObservation> {
    const state = await readJson<{ supervisorPid: number; pid: number; startedAt: string }>(join(this.dir(m.id), 'state.json'));
    const exit = await readJson<{ exitCode: number; finishedAt: string }>(join(this.dir(m.id), 'exit.json'));
    let status: ContainerObservation['status'] = 'created';
    let exitCode: number | null = null;
    let finishedAt: string | null = null;
    if (exit) {
      status = 'exited';
      exitCode = exit.exitCode;
      finishedAt = exit.finishedAt;
    } else if (state) {
      if (alive(state.supervisorPid)) status = 'running';
      else {
        // The supervisor died without recording an exit (killed): report it dead, as the engine would.
        status = 'dead';
        exitCode = 137;
        finishedAt = (await stat(join(this.dir(m.id), 'state.json'))).mtime.toISOString();
      }
    }
    return { id: m.id, name: m.name, labels: m.labels, status, exitCode, oomKilled: false, startedAt: state?.startedAt ?? null, finishedAt };
  }

  async list(labels: Record<string, string>): Promise<ContainerObservation[]> {
    const ms = (await this.metas()).filter((m) => Object.entries(labels).every(([k, v]) => m.labels[k] === v));
    return Promise.all(ms.map((m) => this.observe(m)));
  }

  async summaries(labels: Record<string, string>): Promise<ContainerSummary[]> {
    return (await this.list(labels)).map(({ id, name, labels: l, status }) => ({ id, name, labels: l, status }));
  }

  async inspect(idOrName: string): Promise<ContainerObservation | null> {
    const m = (await this.metas()).find((x) => x.id === idOrName || x.name === idOrName);
    return m ? this.observe(m) : null;
  }

  async create(spec: ContainerSpec): Promise<string> {
    const existing = (await this.metas()).find((m) => m.name === spec.name);
    if (existing) {
      if (existing.labels[LABELS.session] === spec.labels[LABELS.session]) return existing.id;
      throw new BerthError('CONTAINER_NAME_TAKEN', `name ${spec.name} is taken by another local agent`, { details: { name: spec.name } });
    }
    const workspace = spec.mounts.find((m) => m.target === '/workspace')!.source;
    const agentVolume = spec.mounts.find((m) => m.target === '/agent');
    const agentDir = agentVolume ? join(this.volumes, agentVolume.source) : workspace;
    const id = randomBytes(16).toString('hex');
    const meta: Meta = {
      id,
      name: spec.name,
      labels: spec.labels,
      command: spec.command,
      env: {
        PATH: process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin',
        ...spec.env,
        HOME: agentDir,
        BERTH_AGENT_DIR: agentDir,
        BERTH_SHARED_DIR: spec.mounts.find((m) => m.target === '/shared')?.source ?? '',
      },
      cwd: workspace,
      createdAt: new Date().toISOString(),
    };
    await mkdir(this.dir(id), { recursive: true, mode: 0o700 });
    await writeFile(join(this.dir(id), 'meta.json'), JSON.stringify(meta));
    return id;
  }

  async start(id: string): Promise<void> {
    const c = await this.inspect(id);
    if (!c) throw new BerthError('CONTAINER_START_FAILED', `no local agent ${id}`);
    if (c.status === 'running') return;
    await rm(join(this.dir(id), 'exit.json'), { force: true });
    await rm(join(this.dir(id), 'state.json'), { force: true });
    const child = spawn(process.execPath, [SUPERVISOR, this.dir(id)], { detached: true, stdio: 'ignore' });
    child.unref();
    for (let i = 0; i < 200 && !existsSync(join(this.dir(id), 'state.json')); i++) await new Promise((r) => setTimeout(r, 10));
  }

  async stop(id: string, timeoutSec: number): Promise<void> {
    const state = await readJson<{ supervisorPid: number; pid: number }>(join(this.dir(id), 'state.json'));
    if (!state || existsSync(join(this.dir(id), 'exit.json'))) return;
    const group = (sig: NodeJS.Signals) => {
      try {
        process.kill(-state.pid, sig);
      } catch {
        // gone
      }
    };
    group('SIGTERM');
    const deadline = Date.now() + timeoutSec * 1000;
    while (Date.now() < deadline && alive(state.supervisorPid)) await new Promise((r) => setTimeout(r, 50));
    if (alive(state.supervisorPid)) {
      group('SIGKILL');
      for (let i = 0; i < 100 && alive(state.supervisorPid); i++) await new Promise((r) => setTimeout(r, 20));
    }
  }

  async remove(id: string, opts: { volumes?: string[] } = {}): Promise<void> {
    await this.stop(id, 0);
    await rm(this.dir(id), { recursive: true, force: true });
    for (const v of opts.volumes ?? []) await rm(join(this.volumes, v), { recursive: true, force: true });
  }

  /** Local agents share the host's network: there is no network object, and the name stands in for its id. */
  async ensureNetwork(name: string): Promise<string> {
    return name;
  }

  async removeNetwork(): Promise<void> {}

  async ensureVolume(name: string): Promise<void> {
    await mkdir(join(this.volumes, name), { recursive: true, mode: 0o700 });
  }

  /** Local agents have no event stream: changes are found by looking every 250 ms. */
  async events(labels: Record<string, string>, _since: bigint | null, signal: AbortSignal): Promise<AsyncIterable<RuntimeEvent>> {
    const last = new Map<string, string>();
    for (const c of await this.list(labels)) last.set(c.id, c.status);
    const self = this;
    return (async function* () {
      while (!signal.aborted) {
        await new Promise((r) => setTimeout(r, 250));
        const now = await self.list(labels);
        const seen = new Set<string>();
        for (const c of now) {
          seen.add(c.id);
          if (last.get(c.id) !== c.status) {
            last.set(c.id, c.status);
            yield { containerId: c.id, sessionId: c.labels[LABELS.session] ?? null, action: c.status, timeNano: BigInt(Date.now()) * 1_000_000n };
          }
        }
        for (const id of [...last.keys()]) if (!seen.has(id)) last.delete(id);
      }
    })();
  }

  /** Bare processes: not measured (the stuck check goes by output, files and hooks alone). */
  async cpuTimeNs(): Promise<number | null> {
    return null;
  }

  async *logs(id: string, opts: { tail?: number; since?: string; follow?: boolean; signal?: AbortSignal }): AsyncIterable<LogLine> {
    const file = join(this.dir(id), 'log.ndjson');
    const parse = (text: string) =>
      text
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as LogLine)
        .filter((l) => !opts.since || l.ts >= opts.since);
    let offset = 0;
    let first = existsSync(file) ? parse(await readFile(file, 'utf8')) : [];
    offset = existsSync(file) ? (await stat(file)).size : 0;
    if (opts.tail !== undefined) first = opts.tail === 0 ? [] : first.slice(-opts.tail);
    yield* first;
    if (!opts.follow) return;
    while (!opts.signal?.aborted) {
      await new Promise((r) => setTimeout(r, 200));
      if (!existsSync(file)) return;
      const size = (await stat(file)).size;
      if (size > offset) {
        const fh = await open(file, 'r');
        try {
          const buf = Buffer.alloc(size - offset);
          await fh.read(buf, 0, buf.length, offset);
          const text = buf.toString('utf8');
          const end = text.lastIndexOf('\n') + 1;
          offset += Buffer.byteLength(text.slice(0, end));
          yield* parse(text.slice(0, end));
        } finally {
          await fh.close();
        }
      }
      const c = await this.inspect(id);
      if (!c || (c.status !== 'running' && c.status !== 'created' && (await stat(file)).size === offset)) return;
    }
  }

  async exec(id: string, cmd: string[], opts: { timeoutSec: number }): Promise<{ exitCode: number; stdout: string; stderr: string }> {
    const m = await readJson<Meta>(join(this.dir(id), 'meta.json'));
    if (!m) throw new BerthError('SESSION_NOT_RUNNING', 'the session has no local agent');
    return new Promise((resolve, reject) => {
      execFile(cmd[0]!, cmd.slice(1), { cwd: m.cwd, env: m.env, timeout: opts.timeoutSec * 1000, maxBuffer: 4 * 1024 * 1024 }, (err, stdout, stderr) => {
        const e = err as (NodeJS.ErrnoException & { code?: number | string; killed?: boolean }) | null;
        if (e?.killed) return reject(new BerthError('EXEC_TIMEOUT', `command did not finish within ${opts.timeoutSec}s`, { details: { cmd } }));
        if (e && typeof e.code === 'string') return resolve({ exitCode: 127, stdout, stderr: stderr || e.message });
        resolve({ exitCode: e ? Number(e.code ?? 1) : 0, stdout, stderr });
      });
    });
  }

  /**
   * The command as a child process of berthd in the agent's directory and environment, in a process
   * group of its own. No terminal (EXEC_TTY_UNSUPPORTED: a pty needs native code berth does not
   * carry). close() ends stdin and sends the group SIGHUP, as a terminal hanging up would.
   */
  async execStream(id: string, req: ExecRequest): Promise<ExecSession> {
    if (req.tty) throw new BerthError('EXEC_TTY_UNSUPPORTED', 'AGENT_MODE=local cannot give a command a terminal');
    const m = await readJson<Meta>(join(this.dir(id), 'meta.json'));
    const c = m ? await this.observe(m) : null;
    if (!m || c?.status !== 'running') throw new BerthError('SESSION_NOT_RUNNING', 'the session has no running local agent');
    const child = spawn(req.cmd[0]!, req.cmd.slice(1), {
      cwd: req.workdir ?? m.cwd,
      env: { ...m.env, ...req.env },
      detached: true,
      stdio: [req.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'],
    });
    const exited = new Promise<number>((resolve) => {
      child.once('error', () => resolve(127));
      child.once('exit', (code, signal) => resolve(code ?? 128 + ((signal && osConstants.signals[signal]) || 9)));
    });
    child.stdin?.on('error', () => {});
    let closed = false;
    const output = (async function* (): AsyncGenerator<ExecOutput> {
      const queue: ExecOutput[] = [];
      let wake: (() => void) | null = null;
      let open = 2;
      let spawnError: Error | null = null;
      const poke = () => {
        wake?.();
        wake = null;
      };
      child.once('error', (err) => {
        spawnError = err;
        open = 0;
        poke();
      });
      for (const stream of ['stdout', 'stderr'] as const) {
        const r = child[stream]!;
        r.on('data', (data: Buffer) => {
          queue.push({ stream, data });
          // Held back while the reader is behind, as an engine's connection would be.
          if (queue.length > 64) r.pause();
          poke();
        });
        r.once('close', () => {
          open--;
          poke();
        });
      }
      while (true) {
        if (queue.length) {
          yield queue.shift()!;
          if (queue.length < 16) for (const s of [child.stdout, child.stderr]) s?.resume();
          continue;
        }
        if (open <= 0 || closed) break;
        await new Promise<void>((r) => (wake = r));
      }
      if (spawnError) yield { stream: 'stderr', data: Buffer.from(`berth: cannot run ${req.cmd[0]}: ${(spawnError as Error).message}\n`) };
    })();
    return {
      output,
      async write(data) {
        const w = child.stdin;
        if (closed || !w?.writable) return;
        if (!w.write(data)) await new Promise((r) => (w.once('drain', r), w.once('close', r)));
      },
      endStdin() {
        child.stdin?.end();
      },
      async resize() {},
      exitCode: () => exited,
      close() {
        if (closed) return;
        closed = true;
        child.stdin?.destroy();
        if (child.exitCode === null && child.signalCode === null && child.pid) {
          try {
            process.kill(-child.pid, 'SIGHUP');
          } catch {
            // already gone
          }
        }
      },
    };
  }

  async images(): Promise<ImageRecord[]> {
    return [];
  }

  async danglingImages(): Promise<ImageRecord[]> {
    return [];
  }

  async removeImage(ref: string): Promise<void> {
    throw new BerthError('IMAGE_NOT_FOUND', `AGENT_MODE=local has no images (${ref})`);
  }

  async build(req: BuildRequest): Promise<{ id: string; steps: number | null }> {
    throw new BerthError('IMAGE_BUILD_FAILED', `AGENT_MODE=local cannot build images (${req.tag}); run berthd with AGENT_MODE=docker`, {
      details: { step: null, lines: [] },
    });
  }

  async engineSocket(): Promise<null> {
    return null;
  }
}
