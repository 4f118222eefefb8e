import Docker from 'dockerode';
import type { EngineInfo, EnginePort, ImageInfo } from '../port.js';

export interface DockerConnection {
  /** DOCKER_HOST as the docker CLI reads it; null means the local socket. */
  dockerHost: string | null;
  /** Per-request timeout, so a wedged engine cannot hang a caller. */
  timeoutMs?: number;
}

/** Turns DOCKER_HOST into dockerode options, accepting what the docker CLI accepts. */
export function dockerOptions(conn: DockerConnection): Docker.DockerOptions & { display: string } {
  const timeout = conn.timeoutMs ?? 10_000;
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

function isNotFound(err: unknown): boolean {
  return (err as { statusCode?: number }).statusCode === 404;
}

/** EnginePort over the Docker Engine API (dockerode). */
export class DockerEngine implements EnginePort {
  readonly host: string;
  readonly docker: Docker;

  constructor(conn: DockerConnection) {
    const { display, ...opts } = dockerOptions(conn);
    this.host = display;
    this.docker = new Docker(opts);
  }

  async info(): Promise<EngineInfo> {
    const v = await this.docker.version();
    return { version: v.Version, apiVersion: v.ApiVersion };
  }

  async runtimes(): Promise<string[]> {
    const info = (await this.docker.info()) as { Runtimes?: Record<string, unknown> };
    return Object.keys(info.Runtimes ?? {}).sort();
  }

  async image(ref: string): Promise<ImageInfo | null> {
    try {
      const i = await this.docker.getImage(ref).inspect();
      return { id: i.Id, tags: i.RepoTags ?? [], sizeBytes: i.Size, createdAt: i.Created };
    } catch (err) {
      if (isNotFound(err)) return null;
      throw err;
    }
  }
}
