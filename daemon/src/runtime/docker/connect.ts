import Docker from 'dockerode';

export interface DockerConnection {
  /** DOCKER_HOST as the docker CLI reads it; null means the local socket. */
  dockerHost: string | null;
  /** Per-request timeout, so a wedged engine cannot hang a caller. */
  timeoutMs?: number;
}

export interface DockerClients {
  /** For calls: each request has the connection's timeout. */
  docker: Docker;
  /** For long-lived streams (events, followed logs, exec output): no request timeout. */
  streams: Docker;
  /** The address as the user wrote it (for messages). */
  host: string;
  /** Unix socket path of the engine, when it is local (for AGENT_DOCKER_ACCESS=socket). */
  socketPath: string | null;
}

const DEFAULT_SOCKET = '/var/run/docker.sock';

/**
 * dockerode clients for DOCKER_HOST. docker-modem reads the address the way the docker CLI does
 * (unix://, tcp:// with DOCKER_TLS_VERIFY and DOCKER_CERT_PATH, ssh:// over `docker system
 * dial-stdio`); berth's own setting (config file or environment) is handed to it through the same
 * variable while the clients are made. A tcp address without a port gets the CLI's (2375, or 2376
 * with TLS).
 */
export function connectDocker(conn: DockerConnection): DockerClients {
  const timeout = conn.timeoutMs ?? 30_000;
  const host = conn.dockerHost ?? `unix://${DEFAULT_SOCKET}`;
  let address = host;
  const url = new URL(host);
  if ((url.protocol === 'tcp:' || url.protocol === 'http:' || url.protocol === 'https:') && !url.port) {
    url.port = url.protocol === 'https:' || process.env.DOCKER_TLS_VERIFY === '1' ? '2376' : '2375';
    address = url.toString().replace(/\/$/, '');
  }
  if (!['unix:', 'tcp:', 'http:', 'https:', 'ssh:'].includes(url.protocol)) throw new Error(`unsupported DOCKER_HOST scheme ${url.protocol}`);
  const saved = process.env.DOCKER_HOST;
  process.env.DOCKER_HOST = address;
  try {
    const docker = new Docker({ timeout });
    const streams = new Docker({ timeout: 0 });
    const modemSocket = (docker.modem as unknown as { socketPath?: unknown }).socketPath;
    const socketPath = typeof modemSocket === 'string' ? modemSocket : null;
    return { docker, streams, host, socketPath };
  } finally {
    if (saved === undefined) delete process.env.DOCKER_HOST;
    else process.env.DOCKER_HOST = saved;
  }
}
