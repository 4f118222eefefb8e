import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { createServer, connect } from 'node:net';
import { join } from 'node:path';

/** Debian's openssh-server, installed on demand (as root), for the deploy-key path of git-URL projects. */
export function ensureSshd(): void {
  if (existsSync('/usr/sbin/sshd')) return;
  if (process.getuid?.() !== 0) throw new Error('sshd tests need /usr/sbin/sshd: sudo apt-get install openssh-server');
  execFileSync('bash', ['-c', 'DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-server >/dev/null 2>&1 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-server >/dev/null)'], { stdio: 'inherit' });
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

/** A real sshd on 127.0.0.1 that accepts one generated key for root; stopped with stop(). */
export class TestSshd {
  private proc: ChildProcess | null = null;
  port = 0;
  readonly clientKey: string;

  constructor(private readonly dir: string) {
    this.clientKey = join(dir, 'deploy_key');
  }

  async start(): Promise<void> {
    ensureSshd();
    await mkdir(this.dir, { recursive: true });
    await mkdir('/run/sshd', { recursive: true });
    const hostKey = join(this.dir, 'host_key');
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', hostKey]);
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', this.clientKey]);
    await chmod(this.clientKey, 0o600);
    const authorized = join(this.dir, 'authorized_keys');
    execFileSync('cp', [`${this.clientKey}.pub`, authorized]);
    this.port = await freePort();
    const config = join(this.dir, 'sshd_config');
    await writeFile(
      config,
      [
        `Port ${this.port}`,
        'ListenAddress 127.0.0.1',
        `HostKey ${hostKey}`,
        `AuthorizedKeysFile ${authorized}`,
        `PidFile ${join(this.dir, 'sshd.pid')}`,
        'UsePAM no',
        'StrictModes no',
        'PasswordAuthentication no',
        'KbdInteractiveAuthentication no',
        'PubkeyAuthentication yes',
        'PermitRootLogin prohibit-password',
        'LogLevel ERROR',
        '',
      ].join('\n'),
    );
    this.proc = spawn('/usr/sbin/sshd', ['-D', '-e', '-f', config], { stdio: ['ignore', 'ignore', 'pipe'] });
    for (let i = 0; i < 100; i++) {
      if (await new Promise<boolean>((r) => connect(this.port, '127.0.0.1').once('connect', function (this: import('node:net').Socket) { this.destroy(); r(true); }).once('error', () => r(false)))) return;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error('sshd did not start');
  }

  url(path: string): string {
    return `ssh://root@127.0.0.1:${this.port}${path}`;
  }

  stop(): void {
    this.proc?.kill('SIGTERM');
    this.proc = null;
  }
}
