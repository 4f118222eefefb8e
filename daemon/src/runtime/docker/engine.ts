import { stat } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import Docker from 'dockerode';
import tarFs from 'tar-fs';
import { BerthError, type LogLine } from '@berth/client-sdk/protocol';
import type { BuildProgress, BuildRequest, ContainerObservation, ContainerRuntime, ContainerSpec, ContainerStatus, ContainerSummary, EngineInfo, ImageInfo, ImageRecord, RuntimeEvent } from '../port.js';
import { LABELS } from '../labels.js';
import { Demuxer, toEngineSince, toLogLine } from './demux.js';

export interface DockerConnection {
  /** DOCKER_HOST as the docker CLI reads it; null means the local socket. */
  dockerHost: string | null;
  /** Per-request timeout, so a wedged engine cannot hang a caller. */
  timeoutMs?: number;
}

/** Turns DOCKER_HOST into dockerode options, accepting what the docker CLI accepts. */
export function dockerOptions(conn: DockerConnection): Docker.DockerOptions & { display: string } {
  const timeout = conn.timeoutMs ?? 30_000;
  const hostSetting = conn.dockerHost ?? 'unix:///var/run/docker.sock';
  const url = new URL(hostSetting);
  switch (url.protocol) {
    case 'unix:':
      return { socketPath: url.pathname, timeout, display: hostSetting };
    case 'tcp:':
    case 'http:':
    case 'https:': {
      const tls = url.protocol === 'https:' || process.env.DOCKER_TLS_VERIFY === '1';
      return {
        host: url.hostname,
        port: url.port || (tls ? '2376' : '2375'),
        protocol: tls ? 'https' : 'http',
        timeout,
        display: hostSetting,
      };
    }
    case 'ssh:':
      return {
        protocol: 'ssh',
        host: url.hostname,
        port: url.port || '22',
        username: url.username || undefined,
        timeout,
        display: hostSetting,
      } as Docker.DockerOptions & { display: string };
    default:
      throw new Error(`unsupported DOCKER_HOST scheme ${url.protocol}`);
  }
}

type EngineErr = Error & { statusCode?: number; code?: string; json?: { message?: string } | null; reason?: string };

const status = (err: unknown) => (err as EngineErr).statusCode;

/** The engine's own words for a failed call. */
export function engineMessage(err: unknown): string {
  const e = err as EngineErr;
  const m = e.json?.message ?? (typeof e.json === 'string' ? e.json : undefined) ?? e.message;
  return String(m).replace(/^\(HTTP code \d+\) [^-]*- /, '').trim();
}

/** Transport failures (engine down, socket gone) are ENGINE_UNAVAILABLE: transient, retried. */
export function isTransportError(err: unknown): boolean {
  const e = err as EngineErr;
  if (e.statusCode !== undefined) return false;
  return (
    ['ECONNREFUSED', 'ENOENT', 'EPIPE', 'ECONNRESET', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENOTFOUND', 'EAI_AGAIN'].includes(e.code ?? '') ||
    /socket hang up|timeout|ECONNREFUSED|ENOENT/i.test(e.message ?? '')
  );
}

function wrapTransport(err: unknown, host: string): never {
  if (err instanceof BerthError) throw err;
  if (isTransportError(err)) {
    throw new BerthError('ENGINE_UNAVAILABLE', `Docker engine at ${host} is unreachable: ${(err as Error).message}`, { cause: err });
  }
  throw err;
}

function toObservation(i: Docker.ContainerInspectInfo): ContainerObservation {
  const zero = (t: string | undefined) => (!t || t.startsWith('0001-') ? null : t);
  return {
    id: i.Id,
    name: i.Name.replace(/^\//, ''),
    labels: i.Config.Labels ?? {},
    status: i.State.Status as ContainerStatus,
    exitCode: i.State.Status === 'exited' || i.State.Status === 'dead' ? i.State.ExitCode : null,
    oomKilled: i.State.OOMKilled,
    startedAt: zero(i.State.StartedAt),
    finishedAt: zero(i.State.FinishedAt),
  };
}

/** The engine's streamed JSON messages (events, build output), one per line. */
async function* jsonLines<T>(stream: Readable): AsyncGenerator<T> {
  let pending = '';
  for await (const chunk of stream) {
    pending += (chunk as Buffer).toString('utf8');
    let nl: number;
    while ((nl = pending.indexOf('\n')) >= 0) {
      const line = pending.slice(0, nl).trim();
      pending = pending.slice(nl + 1);
      if (line) yield JSON.parse(line) as T;
    }
  }
  if (pending.trim()) yield JSON.parse(pending) as T;
}

const labelFilter = (labels: Record<string, string>) => Object.entries(labels).map(([k, v]) => `${k}=${v}`);

/** Why `n` is not the network berth asked for, or null when it is. Label values are someone's data: quoted. */
function networkMismatch(n: Docker.NetworkInspectInfo, want: { internal: boolean; labels: Record<string, string> }): string | null {
  if (n.Driver !== 'bridge') return `its driver is ${JSON.stringify(n.Driver)}, not bridge`;
  if (Boolean(n.Internal) !== want.internal) return want.internal ? 'it is not Internal (its containers can reach other networks and the outside)' : 'it is Internal';
  const have = n.Labels ?? {};
  for (const [k, v] of Object.entries(want.labels)) {
    if (have[k] === v) continue;
    // Networks an earlier berthd made lack only the kind label; the Internal flag checked above says the same thing.
    if (k === LABELS.network && have[k] === undefined) continue;
    return have[k] === undefined ? `it lacks the label ${k}=${v}` : `its label ${k} is ${JSON.stringify(have[k])}, not ${JSON.stringify(v)}`;
  }
  return null;
}

/** ContainerRuntime over the Docker Engine API (dockerode). */
export class DockerRuntime implements ContainerRuntime {
  readonly host: string;
  readonly docker: Docker;
  /** For long-lived streams (events, followed logs, exec output): no request timeout. */
  private readonly streams: Docker;
  /** Unix socket path of the engine, when it is local (for AGENT_DOCKER_ACCESS=socket). */
  readonly socketPath: string | null;

  constructor(conn: DockerConnection) {
    const { display, ...opts } = dockerOptions(conn);
    this.host = display;
    this.docker = new Docker(opts);
    this.streams = new Docker({ ...opts, timeout: 0 });
    this.socketPath = opts.socketPath ?? null;
  }

  async info(): Promise<EngineInfo> {
    const v = await this.docker.version();
    return { version: v.Version, apiVersion: v.ApiVersion };
  }

  async runtimes(): Promise<string[]> {
    try {
      const info = (await this.docker.info()) as { Runtimes?: Record<string, unknown> };
      return Object.keys(info.Runtimes ?? {}).sort();
    } catch (err) {
      wrapTransport(err, this.host);
    }
  }

  async image(ref: string): Promise<ImageInfo | null> {
    try {
      const i = await this.docker.getImage(ref).inspect();
      return { id: i.Id, tags: i.RepoTags ?? [], sizeBytes: i.Size, createdAt: i.Created };
    } catch (err) {
      if (status(err) === 404) return null;
      wrapTransport(err, this.host);
    }
  }

  async list(labels: Record<string, string>): Promise<ContainerObservation[]> {
    try {
      const rows = await this.docker.listContainers({ all: true, filters: { label: labelFilter(labels) } });
      const out: ContainerObservation[] = [];
      for (const r of rows) {
        const o = await this.inspect(r.Id);
        if (o) out.push(o);
      }
      return out;
    } catch (err) {
      wrapTransport(err, this.host);
    }
  }

  async summaries(labels: Record<string, string>): Promise<ContainerSummary[]> {
    try {
      const rows = await this.docker.listContainers({ all: true, filters: { label: labelFilter(labels) } });
      return rows.map((r) => ({ id: r.Id, name: (r.Names[0] ?? '').replace(/^\//, ''), labels: r.Labels ?? {}, status: r.State as ContainerStatus }));
    } catch (err) {
      wrapTransport(err, this.host);
    }
  }

  async inspect(idOrName: string): Promise<ContainerObservation | null> {
    try {
      return toObservation(await this.docker.getContainer(idOrName).inspect());
    } catch (err) {
      if (status(err) === 404) return null;
      wrapTransport(err, this.host);
    }
  }

  async create(spec: ContainerSpec): Promise<string> {
    const hostConfig: Docker.HostConfig = {
      Init: spec.security.init,
      Privileged: spec.security.privileged,
      CapDrop: spec.security.capDrop,
      CapAdd: spec.security.capAdd,
      SecurityOpt: spec.security.noNewPrivileges ? ['no-new-privileges:true'] : [],
      Memory: spec.memoryBytes,
      MemorySwap: spec.memoryBytes,
      NanoCpus: spec.nanoCpus,
      PidsLimit: spec.pidsLimit,
      RestartPolicy: { Name: 'no' },
      LogConfig: { Type: 'json-file', Config: { 'max-size': spec.security.logs.maxSize, 'max-file': String(spec.security.logs.maxFiles) } },
      ReadonlyRootfs: spec.security.readOnlyRootfs,
      Tmpfs: spec.security.tmpfs,
      Mounts: spec.mounts.map((m) => ({
        Type: m.kind,
        Source: m.source,
        Target: m.target,
        ReadOnly: m.readOnly,
        ...(m.kind === 'bind' ? { BindOptions: { Propagation: 'rprivate' } } : {}),
      })) as Docker.MountSettings[],
      NetworkMode: spec.network === 'none' ? 'none' : spec.networkName!,
      GroupAdd: spec.groupAdd,
      ...(spec.runtime ? { Runtime: spec.runtime } : {}),
    };
    // The engine resolves a network named in NetworkMode by name at start, which fails when the
    // name is ambiguous; an endpoint with the NetworkID makes it use that one network. (NetworkMode
    // set to the id alone is not enough: the endpoint is still keyed by name.) Some engines do not
    // check the network at create, so a removed one is found here rather than at start.
    const attach = spec.network !== 'none' && spec.networkId ? { network: spec.networkName!, id: spec.networkId } : null;
    if (attach) {
      try {
        await this.docker.getNetwork(attach.id).inspect();
      } catch (err) {
        if (status(err) === 404) {
          throw new BerthError('NETWORK_NOT_FOUND', `network ${attach.network} (${attach.id.slice(0, 12)}) no longer exists`, { details: { ...attach } });
        }
        wrapTransport(err, this.host);
      }
    }
    try {
      const c = await this.docker.createContainer({
        name: spec.name,
        Image: spec.image,
        Cmd: spec.command,
        Env: Object.entries(spec.env).map(([k, v]) => `${k}=${v}`),
        Labels: spec.labels,
        User: spec.user,
        WorkingDir: spec.workdir,
        Tty: false,
        OpenStdin: false,
        AttachStdin: false,
        HostConfig: hostConfig,
        ...(attach ? { NetworkingConfig: { EndpointsConfig: { [attach.network]: { NetworkID: attach.id } } } } : {}),
      });
      return c.id;
    } catch (err) {
      const msg = engineMessage(err);
      if (status(err) === 409) {
        // Our own earlier attempt got there (a crash between create and recording it): adopt it.
        const existing = await this.inspect(spec.name);
        if (existing && existing.labels[LABELS.session] === spec.labels[LABELS.session]) return existing.id;
        throw new BerthError('CONTAINER_NAME_TAKEN', `container name ${spec.name} is taken by another container: ${msg}`, { details: { name: spec.name } });
      }
      if (status(err) === 404 && /image/i.test(msg)) {
        throw new BerthError('IMAGE_NOT_FOUND', `image ${spec.image} is not on the engine`, { details: { image: spec.image } });
      }
      if (/runtime/i.test(msg) && (status(err) ?? 0) >= 400) {
        const have = await this.runtimes().catch(() => [] as string[]);
        throw new BerthError('RUNTIME_NOT_FOUND', `OCI runtime ${spec.runtime} is not available; the engine has: ${have.join(', ') || 'none listed'}`, {
          details: { runtime: spec.runtime, available: have },
        });
      }
      if (status(err) !== undefined) throw new BerthError('CONTAINER_CREATE_FAILED', `cannot create container ${spec.name}: ${msg}`);
      wrapTransport(err, this.host);
    }
  }

  async start(id: string): Promise<void> {
    try {
      await this.docker.getContainer(id).start();
    } catch (err) {
      if (status(err) === 304) return;
      if (status(err) !== undefined) throw new BerthError('CONTAINER_START_FAILED', `cannot start container: ${engineMessage(err)}`);
      wrapTransport(err, this.host);
    }
  }

  async stop(id: string, timeoutSec: number): Promise<void> {
    try {
      await this.docker.getContainer(id).stop({ t: timeoutSec });
    } catch (err) {
      if (status(err) === 304 || status(err) === 404) return;
      wrapTransport(err, this.host);
    }
  }

  async remove(id: string, opts: { volumes?: string[] } = {}): Promise<void> {
    try {
      await this.docker.getContainer(id).remove({ force: true });
    } catch (err) {
      if (status(err) !== 404 && !(status(err) === 409 && /already in progress/.test(engineMessage(err)))) wrapTransport(err, this.host);
    }
    for (const v of opts.volumes ?? []) {
      try {
        await this.docker.getVolume(v).remove();
      } catch (err) {
        if (status(err) !== 404) wrapTransport(err, this.host);
      }
    }
  }

  /** Networks named exactly `name`: the engine's name filter also matches names that merely contain it. */
  private async networksNamed(name: string): Promise<Docker.NetworkInspectInfo[]> {
    const rows = await this.docker.listNetworks({ filters: { name: [name] } });
    return rows.filter((n) => n.Name === name);
  }

  async ensureNetwork(name: string, opts: { internal: boolean; labels: Record<string, string> }): Promise<string> {
    try {
      for (let attempt = 0; attempt < 5; attempt++) {
        const found = await this.networksNamed(name);
        if (found.length) return await this.adoptNetwork(name, found, opts);
        try {
          // CheckDuplicate is not atomic on engine 20.10 (concurrent creates both succeed): the list
          // on the next turn is what decides, never this call's result.
          await this.docker.createNetwork({ Name: name, Driver: 'bridge', Internal: opts.internal, Labels: opts.labels, CheckDuplicate: true });
        } catch (err) {
          if (status(err) !== 409) throw err;
        }
      }
      throw new BerthError('CONTAINER_CREATE_FAILED', `network ${name} disappeared each time berth made it`);
    } catch (err) {
      if (err instanceof BerthError) throw err;
      if (status(err) !== undefined) throw new BerthError('CONTAINER_CREATE_FAILED', `cannot create network ${name}: ${engineMessage(err)}`);
      wrapTransport(err, this.host);
    }
  }

  /**
   * Every network in `found` must be berth's; of duplicates, the one to keep is the same for every
   * caller given the same engine state: one with containers attached first (those cannot be removed
   * anyway), then the oldest, then the lowest id. Empty others are removed.
   */
  private async adoptNetwork(name: string, found: Docker.NetworkInspectInfo[], opts: { internal: boolean; labels: Record<string, string> }): Promise<string> {
    for (const n of found) {
      const why = networkMismatch(n, opts);
      if (!why) continue;
      const id = n.Id.slice(0, 12);
      const project = opts.labels[LABELS.project];
      throw new BerthError(
        'NETWORK_CONFLICT',
        `network ${name} (id ${id}) is not berth's ${opts.internal ? 'internal' : 'bridge'} network${project ? ` for project ${project}` : ''}: ${why}. ` +
          `berth will not use it: remove it (docker network rm ${id}) or recreate what uses it under another name, then restart the session`,
        { details: { network: name, id: n.Id, reason: why } },
      );
    }
    if (found.length === 1) return found[0]!.Id;
    const ranked: { id: string; created: number; inUse: boolean }[] = [];
    for (const n of found) {
      try {
        const full = await this.docker.getNetwork(n.Id).inspect();
        ranked.push({ id: n.Id, created: Date.parse(n.Created), inUse: Object.keys(full.Containers ?? {}).length > 0 });
      } catch (err) {
        if (status(err) !== 404) throw err;
      }
    }
    ranked.sort((a, b) => Number(b.inUse) - Number(a.inUse) || a.created - b.created || (a.id < b.id ? -1 : 1));
    const [keep, ...rest] = ranked;
    if (!keep) throw new BerthError('NETWORK_NOT_FOUND', `every network named ${name} disappeared while berth chose one`);
    for (const extra of rest.filter((r) => !r.inUse)) {
      try {
        await this.docker.getNetwork(extra.id).remove();
      } catch (err) {
        // Gone already, or a container joined it meanwhile: it stays until it is empty.
        if (status(err) !== 404 && status(err) !== 403 && status(err) !== 409) throw err;
      }
    }
    return keep.id;
  }

  async removeNetwork(name: string, owner: Record<string, string> = { [LABELS.managed]: 'true' }): Promise<void> {
    try {
      for (const n of await this.networksNamed(name)) {
        if (!Object.entries(owner).every(([k, v]) => n.Labels?.[k] === v)) continue;
        try {
          await this.docker.getNetwork(n.Id).remove();
        } catch (err) {
          if (status(err) !== 404) throw err;
        }
      }
    } catch (err) {
      wrapTransport(err, this.host);
    }
  }

  async ensureVolume(name: string, labels: Record<string, string>): Promise<void> {
    try {
      await this.docker.createVolume({ Name: name, Labels: labels });
    } catch (err) {
      wrapTransport(err, this.host);
    }
  }

  async events(labels: Record<string, string>, sinceNano: bigint | null, signal: AbortSignal): Promise<AsyncIterable<RuntimeEvent>> {
    const since = sinceNano === null ? undefined : `${sinceNano / 1_000_000_000n}.${String(sinceNano % 1_000_000_000n).padStart(9, '0')}`;
    let stream: Readable;
    try {
      stream = (await this.streams.getEvents({
        ...(since ? { since } : {}),
        filters: { type: ['container'], label: labelFilter(labels) },
        abortSignal: signal,
      } as Docker.GetEventsOptions)) as unknown as Readable;
    } catch (err) {
      wrapTransport(err, this.host);
    }
    const host = this.host;
    return (async function* () {
      const onAbort = () => stream.destroy();
      signal.addEventListener('abort', onAbort, { once: true });
      try {
        for await (const e of jsonLines<{ id?: string; Action?: string; timeNano?: number; Actor?: { ID?: string; Attributes?: Record<string, string> } }>(stream)) {
          yield {
            containerId: e.Actor?.ID ?? e.id ?? '',
            sessionId: e.Actor?.Attributes?.[LABELS.session] ?? null,
            action: e.Action ?? '',
            timeNano: BigInt(e.timeNano ?? 0),
          };
        }
        if (!signal.aborted) throw new BerthError('ENGINE_UNAVAILABLE', `event stream from ${host} ended`);
      } catch (err) {
        if (signal.aborted) return;
        wrapTransport(err, host);
      } finally {
        signal.removeEventListener('abort', onAbort);
        stream.destroy();
      }
    })();
  }

  async *logs(id: string, opts: { tail?: number; since?: string; follow?: boolean; signal?: AbortSignal }): AsyncIterable<LogLine> {
    const c = (opts.follow ? this.streams : this.docker).getContainer(id);
    const since = opts.since ? toEngineSince(opts.since) : undefined;
    const base = { stdout: true, stderr: true, timestamps: true, ...(opts.tail !== undefined ? { tail: opts.tail } : {}), ...(since ? { since } : {}) };
    const queue: LogLine[] = [];
    const demux = new Demuxer((stream, raw) => queue.push(toLogLine(stream, raw)));
    if (!opts.follow) {
      let buf: Buffer;
      try {
        buf = (await c.logs({ ...base, follow: false })) as unknown as Buffer;
      } catch (err) {
        if (status(err) === 404) throw new BerthError('SESSION_NOT_RUNNING', 'the session has no container');
        wrapTransport(err, this.host);
      }
      demux.push(Buffer.isBuffer(buf) ? buf : Buffer.from(buf as unknown as string));
      demux.end();
      yield* queue;
      return;
    }
    let stream: Readable;
    try {
      stream = (await c.logs({ ...base, follow: true, ...(opts.signal ? { abortSignal: opts.signal } : {}) })) as unknown as Readable;
    } catch (err) {
      if (status(err) === 404) throw new BerthError('SESSION_NOT_RUNNING', 'the session has no container');
      wrapTransport(err, this.host);
    }
    const onAbort = () => stream.destroy();
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    try {
      for await (const chunk of stream) {
        demux.push(chunk as Buffer);
        while (queue.length) yield queue.shift()!;
      }
      demux.end();
      while (queue.length) yield queue.shift()!;
    } catch (err) {
      if (opts.signal?.aborted) return;
      wrapTransport(err, this.host);
    } finally {
      opts.signal?.removeEventListener('abort', onAbort);
      stream.destroy();
    }
  }

  async exec(id: string, cmd: string[], opts: { timeoutSec: number; user?: string }): Promise<{ exitCode: number; stdout: string; stderr: string }> {
    const c = this.streams.getContainer(id);
    let exec: Docker.Exec;
    try {
      exec = await c.exec({ Cmd: cmd, AttachStdout: true, AttachStderr: true, AttachStdin: false, Tty: false, ...(opts.user ? { User: opts.user } : {}) });
    } catch (err) {
      if (status(err) === 409) throw new BerthError('SESSION_NOT_RUNNING', 'the session container is not running');
      if (status(err) !== undefined) throw new BerthError('CONTAINER_START_FAILED', `cannot exec: ${engineMessage(err)}`);
      wrapTransport(err, this.host);
    }
    const out = { stdout: '', stderr: '' };
    const MAX = 4 * 1024 * 1024;
    const stream = (await exec.start({ hijack: true, stdin: false })) as unknown as Readable;
    const demux = new Demuxer((s, line) => {
      if (out[s].length < MAX) out[s] += `${line}\n`;
    });
    let timer: NodeJS.Timeout | undefined;
    const done = new Promise<void>((resolve, reject) => {
      stream.on('data', (c: Buffer) => demux.push(c));
      stream.on('end', resolve);
      stream.on('close', resolve);
      stream.on('error', reject);
    });
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        stream.destroy();
        reject(new BerthError('EXEC_TIMEOUT', `command did not finish within ${opts.timeoutSec}s`, { details: { cmd } }));
      }, opts.timeoutSec * 1000);
    });
    try {
      await Promise.race([done, timeout]);
    } finally {
      clearTimeout(timer);
    }
    demux.end();
    // The exit code can lag the end of the stream by a moment.
    for (let i = 0; i < 50; i++) {
      const info = await exec.inspect();
      if (!info.Running && info.ExitCode !== null) return { exitCode: info.ExitCode, ...out };
      await new Promise((r) => setTimeout(r, 20));
    }
    return { exitCode: -1, ...out };
  }

  async images(match: { namePrefix: string; label: string }): Promise<ImageRecord[]> {
    try {
      const rows = await this.docker.listImages({ all: false });
      return rows
        .filter((r) => (r.RepoTags ?? []).some((t) => t.startsWith(match.namePrefix)) || (r.Labels ?? {})[match.label] === 'true')
        .map((r) => ({
          id: r.Id,
          tags: (r.RepoTags ?? []).filter((t) => t !== '<none>:<none>'),
          sizeBytes: r.Size,
          createdAt: new Date(r.Created * 1000).toISOString(),
          labels: r.Labels ?? {},
        }));
    } catch (err) {
      wrapTransport(err, this.host);
    }
  }

  async removeImage(ref: string): Promise<void> {
    try {
      await this.docker.getImage(ref).remove({ force: false, noprune: false });
    } catch (err) {
      if (status(err) === 404) throw new BerthError('IMAGE_NOT_FOUND', `image ${ref} is not on the engine`, { details: { image: ref } });
      if (status(err) === 409) throw new BerthError('IMAGE_IN_USE', `image ${ref} is used by a container: ${engineMessage(err)}`, { details: { image: ref } });
      wrapTransport(err, this.host);
    }
  }

  async build(req: BuildRequest, onProgress: (p: BuildProgress) => void): Promise<{ id: string; steps: number | null }> {
    const tarStream = tarFs.pack(req.context, { dereference: false });
    let stream: Readable;
    try {
      stream = (await this.streams.buildImage(tarStream as unknown as NodeJS.ReadableStream, {
        t: req.tag,
        dockerfile: req.dockerfile,
        buildargs: req.buildArgs,
        labels: req.labels,
        rm: true,
        forcerm: true,
        ...(req.target ? { target: req.target } : {}),
        ...(req.noCache ? { nocache: true } : {}),
      })) as unknown as Readable;
    } catch (err) {
      if (status(err) !== undefined) throw new BerthError('IMAGE_BUILD_FAILED', `the engine refused the build: ${engineMessage(err)}`, { details: { step: null, lines: [] } });
      wrapTransport(err, this.host);
    }
    let step: number | null = null;
    let total: number | null = null;
    let stepLine = '';
    const last: string[] = [];
    let id: string | null = null;
    let failure: string | null = null;
    const handle = (msg: { stream?: string; error?: string; errorDetail?: { message?: string }; aux?: { ID?: string } }) => {
      if (msg.aux?.ID) id = msg.aux.ID;
      if (msg.error) failure = msg.errorDetail?.message ?? msg.error;
      for (const raw of (msg.stream ?? '').split('\n')) {
        const line = raw.replace(/\r$/, '');
        if (!line.trim()) continue;
        const m = /^Step (\d+)\/(\d+) : (.*)$/.exec(line);
        if (m) {
          step = Number(m[1]);
          total = Number(m[2]);
          stepLine = m[3]!;
          last.length = 0;
        } else {
          last.push(line);
          if (last.length > 20) last.shift();
        }
        const built = /^Successfully built ([0-9a-f]+)$/.exec(line);
        if (built && !id) id = built[1]!;
        onProgress({ step, total, line });
      }
    };
    for await (const msg of jsonLines<Parameters<typeof handle>[0]>(stream)) handle(msg);
    if (failure) {
      throw new BerthError('IMAGE_BUILD_FAILED', `building ${req.tag} failed at step ${step ?? '?'}${total ? `/${total}` : ''} (${stepLine}): ${failure}`, {
        details: { step, total, instruction: stepLine, lines: [...last], error: failure },
      });
    }
    const info = await this.image(req.tag);
    return { id: info?.id ?? id ?? '', steps: total };
  }

  async engineSocket(): Promise<{ path: string; gid: number | null } | null> {
    if (!this.socketPath) return null;
    try {
      return { path: this.socketPath, gid: (await stat(this.socketPath)).gid };
    } catch {
      return { path: this.socketPath, gid: null };
    }
  }
}
