import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { docker } from '../helpers/docker.js';
import { REPO_ROOT, poll, sh, startWithProject, type DaemonProcess } from '../helpers/daemon.js';

const OFFLINE_BASE = 'berth-offline-base:bookworm';
const PROD = 'claude-agent-base:berth-test';
const DEV = 'claude-agent-base:berth-test-dev';
const inspect = async (id: string) => JSON.parse(await docker('inspect', id))[0];

/**
 * images/base built by berth through the Engine API on the offline base (Debian bookworm + the host's
 * Node 20; no registry here), then used for real sessions: tools, user, health check, signals, /agent.
 */
describe('images/base on the offline base', () => {
  let d: DaemonProcess;

  beforeAll(async () => {
    execFileSync('bash', [join(REPO_ROOT, 'scripts/build-offline-base.sh'), OFFLINE_BASE], { stdio: 'inherit' });
    ({ d } = await startWithProject({ env: { AGENT_DEFAULT_IMAGE: PROD } }));
    const dockerfile = join(REPO_ROOT, 'images/base/Dockerfile');
    const buildArgs = { BASE_IMAGE: OFFLINE_BASE, TASK_MASTER: '0' };
    await d.client.images.build({ name: PROD, dockerfile, buildArgs });
    await d.client.images.build({ name: DEV, dockerfile, buildArgs, variant: 'dev' });
  }, 900_000);
  afterAll(async () => {
    await d?.[Symbol.asyncDispose]();
    await docker('rmi', PROD, DEV).catch(() => {});
  });

  it('has the tools, Node >= 20, and a non-root user; dev adds its debugging tools', async () => {
    const out = await docker('run', '--rm', PROD, 'sh', '-c', 'node --version; git --version; tmux -V; python3 --version; make --version | head -1; g++ --version | head -1; jq --version; ssh -V 2>&1; curl --version | head -1; id -u; pwd');
    const lines = out.split('\n');
    expect(Number(/^v(\d+)/.exec(lines[0]!)![1])).toBeGreaterThanOrEqual(20);
    expect(out).toMatch(/git version 2\./);
    expect(out).toMatch(/tmux \d/);
    expect(out).toMatch(/Python 3\./);
    expect(out).toMatch(/GNU Make/);
    expect(out).toMatch(/g\+\+/);
    expect(out).toMatch(/jq-1/);
    expect(out).toMatch(/OpenSSH/);
    expect(out).toMatch(/curl \d/);
    expect(lines.at(-2)).not.toBe('0');
    expect(lines.at(-1)).toBe('/workspace');
    const labels = (await inspect(PROD)).Config.Labels;
    expect(labels).toMatchObject({ 'dev.berth.image': 'true', 'dev.berth.image.stack': 'base', 'dev.berth.image.variant': 'prod' });
    expect((await inspect(DEV)).Config.Labels['dev.berth.image.variant']).toBe('dev');
    const count = 'n=0; for t in vim htop strace tcpdump; do command -v $t >/dev/null && n=$((n+1)); done; echo $n';
    expect(await docker('run', '--rm', DEV, 'sh', '-c', count)).toBe('4');
    expect(await docker('run', '--rm', PROD, 'sh', '-c', count)).toBe('0');
    const list = await d.client.images.list();
    expect(list.find((i) => i.name === PROD)).toMatchObject({ stack: 'base', variant: 'prod' });
  });

  it('runs a session whose health check turns healthy, and whose agent gets SIGTERM and exits with its own code', async () => {
    await d.client.agents.define({
      name: 'polite',
      command: sh('echo ready; trap "echo cleaning up; sleep 1; exit 3" TERM; while true; do sleep 0.2; done'),
      restartPolicy: 'never',
    });
    const s = await d.client.sessions.start({ project: 'web', agent: 'polite' });
    expect(s.image).toBe(PROD);
    await poll(async () => (await inspect(s.containerId!)).State.Health?.Status === 'healthy', 60_000, 'healthy');
    const health = JSON.parse((await d.client.sessions.exec({ id: s.id, cmd: ['curl', '-fsS', 'http://127.0.0.1:3999/health'] })).stdout);
    expect(health).toMatchObject({ alive: true });
    expect(Date.parse(health.lastOutputAt)).toBeGreaterThan(0);

    const t0 = Date.now();
    const stopped = await d.client.sessions.stop({ id: s.id, timeoutSec: 10 });
    expect(Date.now() - t0).toBeLessThan(9_000);
    expect(stopped.state).toBe('stopped');
    expect((await inspect(s.containerId!)).State.ExitCode).toBe(3);
    expect((await d.client.sessions.logs({ id: s.id })).map((l) => l.line)).toEqual(expect.arrayContaining(['ready', 'cleaning up']));
  });

  it('keeps /agent across a container restart and a recreation', async () => {
    await d.client.agents.define({ name: 'keeper', command: sh('sleep 3600') });
    const s = await d.client.sessions.start({ project: 'web', agent: 'keeper', mode: 'read' });
    expect((await d.client.sessions.exec({ id: s.id, cmd: sh('echo kept > /agent/note && ls -ld /agent | cut -c1-10') })).stdout).toBe('drwxrwxrwt\n');
    await docker('restart', '-t', '1', s.containerId!);
    await poll(async () => (await d.client.sessions.get({ id: s.id })).state === 'running', 20_000, 'running after restart');
    expect((await d.client.sessions.exec({ id: s.id, cmd: ['cat', '/agent/note'] })).stdout).toBe('kept\n');
    const r = await d.client.sessions.restart({ id: s.id });
    expect(r.containerId).not.toBe(s.containerId);
    expect((await d.client.sessions.exec({ id: s.id, cmd: ['cat', '/agent/note'] })).stdout).toBe('kept\n');
    await d.client.sessions.remove({ id: s.id });
  });
});
