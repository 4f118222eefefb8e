import { readFile } from 'node:fs/promises';
import { stat } from 'node:fs/promises';
import Docker from 'dockerode';
import { BerthError } from '@berth/client-sdk/protocol';
import type { ContainerObservation, ContainerRuntime, ContainerSpec, ContainerStatus, ContainerSummary, EngineInfo } from '../port.js';
import { LABELS, labelFilter } from '../labels.js';
import { connectDocker, type DockerConnection } from './connect.js';
import { DockerImages } from './images.js';
import { DockerNetworks } from './networks.js';
import { DockerStreams } from './streams.js';
import { engineMessage, status, wrapTransport } from './errors.js';

export type { DockerConnection } from './connect.js';

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


/** ContainerRuntime over the Docker Engine API (dockerode). */
export class DockerRuntime implements ContainerRuntime {
  readonly host: string;
  readonly docker: Docker;
  /** For long-lived streams (events, followed logs, exec output): no request timeout. */
  private readonly streams: Docker;
  /** Unix socket path of the engine, when it is local (for AGENT_DOCKER_ACCESS=socket). */
  readonly socketPath: string | null;

  private readonly networks: DockerNetworks;
  private readonly imageStore: DockerImages;
  private readonly output: DockerStreams;

  constructor(conn: DockerConnection) {
    ({ docker: this.docker, streams: this.streams, host: this.host, socketPath: this.socketPath } = connectDocker(conn));
    this.networks = new DockerNetworks(this.docker, this.host);
    this.imageStore = new DockerImages(this.docker, this.streams, this.host);
    this.output = new DockerStreams(this.docker, this.streams, this.host);
  }

  // Networks, images and streams have files of their own (networks.ts, images.ts, streams.ts).
  ensureNetwork: ContainerRuntime['ensureNetwork'] = (name, opts) => this.networks.ensureNetwork(name, opts);
  removeNetwork: ContainerRuntime['removeNetwork'] = (name, owner) => this.networks.removeNetwork(name, owner);
  image: ContainerRuntime['image'] = (ref) => this.imageStore.image(ref);
  images: ContainerRuntime['images'] = (match) => this.imageStore.images(match);
  removeImage: ContainerRuntime['removeImage'] = (ref) => this.imageStore.removeImage(ref);
  danglingImages: ContainerRuntime['danglingImages'] = (labels) => this.imageStore.danglingImages(labels);
  build: ContainerRuntime['build'] = (req, onProgress) => this.imageStore.build(req, onProgress);
  events: ContainerRuntime['events'] = (labels, sinceNano, signal) => this.output.events(labels, sinceNano, signal);
  logs: ContainerRuntime['logs'] = (id, opts) => this.output.logs(id, opts);
  exec: ContainerRuntime['exec'] = (id, cmd, opts) => this.output.exec(id, cmd, opts);
  execStream: ContainerRuntime['execStream'] = (id, req) => this.output.execStream(id, req);

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

  async cpuTimeNs(id: string): Promise<number | null> {
    // A local engine: the container's cgroup says it in a file read (the stats API takes about a
    // second a call once a container is sampled again). cgroup v1 and v2, cgroupfs and systemd.
    if (this.socketPath && /^[0-9a-f]{64}$/.test(id)) {
      for (const [file, scale] of [
        [`/sys/fs/cgroup/cpuacct/docker/${id}/cpuacct.usage`, 1],
        [`/sys/fs/cgroup/cpu,cpuacct/docker/${id}/cpuacct.usage`, 1],
        [`/sys/fs/cgroup/system.slice/docker-${id}.scope/cpu.stat`, 1000],
        [`/sys/fs/cgroup/docker/${id}/cpu.stat`, 1000],
      ] as const) {
        const text = await readFile(file, 'utf8').catch(() => null);
        if (text === null) continue;
        const n = scale === 1 ? Number(text.trim()) : Number(/^usage_usec (\d+)$/m.exec(text)?.[1]);
        if (Number.isFinite(n)) return n * scale;
      }
    }
    try {
      // One sample, no stream left open: one-shot skips the engine's second sample (API 1.41+).
      const s = (await this.docker.getContainer(id).stats({ stream: false, 'one-shot': true } as never)) as unknown as {
        cpu_stats?: { cpu_usage?: { total_usage?: number } };
      };
      const ns = s.cpu_stats?.cpu_usage?.total_usage;
      return typeof ns === 'number' ? ns : null;
    } catch (err) {
      if (status(err) === 404 || status(err) === 409) return null;
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
  async ensureVolume(name: string, labels: Record<string, string>): Promise<void> {
    try {
      await this.docker.createVolume({ Name: name, Labels: labels });
    } catch (err) {
      wrapTransport(err, this.host);
    }
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
