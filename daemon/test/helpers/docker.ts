import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { createServer, connect, type Server } from 'node:net';
import { rm } from 'node:fs/promises';

const run = promisify(execFile);

/** A one-file image, made offline with `docker import`: enough for "the default image exists". */
export const TEST_IMAGE = 'berth-test-busybox:latest';
/** A one-file image with no shell: present, but nothing in it runs. */
export const EMPTY_IMAGE = 'berth-test-empty:latest';
export const TEST_LABEL = 'dev.berth.test';

export async function docker(...args: string[]): Promise<string> {
  const { stdout } = await run('docker', args, { maxBuffer: 64 * 1024 * 1024 });
  return stdout.trim();
}

export async function ensureTestImage(): Promise<void> {
  try {
    await docker('image', 'inspect', EMPTY_IMAGE);
    return;
  } catch {
    // build below
  }
  await run('bash', [
    '-c',
    `set -e; d=$(mktemp -d); echo berth > "$d/README"; tar -C "$d" -c . | docker import --change "LABEL ${TEST_LABEL}=true" - ${EMPTY_IMAGE} >/dev/null; rm -rf "$d"`,
  ]);
}

/**
 * Removes what a crashed earlier run may have left: test-labelled containers, and berth objects whose
 * owning daemon's home (a temp dir) is gone.
 */
export async function sweepTestLeftovers(): Promise<void> {
  const ids = await docker('ps', '-aq', '--filter', `label=${TEST_LABEL}`);
  if (ids) await docker('rm', '-f', ...ids.split('\n'));
}

/**
 * A Unix-socket proxy in front of the real engine: stopping it makes the engine unreachable for a
 * daemon pointed at it (DOCKER_HOST=unix://<path>) without disturbing the real dockerd.
 */
export class EngineProxy {
  private server: Server | null = null;
  private readonly conns = new Set<import('node:net').Socket>();

  constructor(
    readonly path: string,
    private readonly target = '/var/run/docker.sock',
  ) {}

  get dockerHost(): string {
    return `unix://${this.path}`;
  }

  async start(): Promise<void> {
    await rm(this.path, { force: true });
    this.server = createServer((client) => {
      const upstream = connect(this.target);
      this.conns.add(client).add(upstream);
      const drop = () => {
        client.destroy();
        upstream.destroy();
        this.conns.delete(client);
        this.conns.delete(upstream);
      };
      client.on('error', drop).on('close', drop);
      upstream.on('error', drop).on('close', drop);
      client.pipe(upstream).pipe(client);
    });
    await new Promise<void>((resolve, reject) => this.server!.once('error', reject).listen(this.path, resolve));
  }

  async stop(): Promise<void> {
    for (const c of this.conns) c.destroy();
    this.conns.clear();
    const s = this.server;
    this.server = null;
    if (s) await new Promise<void>((resolve) => s.close(() => resolve()));
    await rm(this.path, { force: true });
  }
}
