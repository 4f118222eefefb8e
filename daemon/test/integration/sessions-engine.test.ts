import { chmod, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { BerthError, type LogLine } from '@berth/client-sdk';
import { networkName } from '../../src/runtime/labels.js';
import { describe, expect, it } from 'vitest';
import { EngineProxy, docker } from '../helpers/docker.js';
import { poll, sh, startWithProject, tempDir } from '../helpers/daemon.js';

const inspect = async (id: string) => JSON.parse(await docker('inspect', id))[0];

describe('sessions: containment, failures, secrets, networks, logs, engine outages', () => {
  it('contains a fork bomb and a memory hog', async () => {
    const { d } = await startWithProject();
    await using _ = d;
    // A quarter of a CPU each: the rest of the suite shares this machine with the bomb.
    await d.client.agents.define({ name: 'bomb', command: sh('b() { b | b & }; b; sleep 3600'), limits: { pids: 64, cpus: 0.25 }, restartPolicy: 'never' });
    await d.client.agents.define({
      name: 'hog',
      command: sh('x=a; while true; do x="$x$x"; done'),
      limits: { memory: '32m', cpus: 0.25 },
      restartPolicy: 'never',
    });
    const bomb = await d.client.sessions.start({ project: 'web', agent: 'bomb' });
    await new Promise((r) => setTimeout(r, 1500));
    const pids = Number(await docker('inspect', '-f', '{{.HostConfig.PidsLimit}}', bomb.containerId!));
    expect(pids).toBe(64);
    const top = (await docker('top', bomb.containerId!)).split('\n').length - 1;
    expect(top).toBeLessThanOrEqual(64);
    // The daemon still answers while the bomb runs.
    expect((await d.client.daemon.status()).pid).toBe(d.pid);
    await d.client.sessions.remove({ id: bomb.id, force: true });

    const hog = await d.client.sessions.start({ project: 'web', agent: 'hog' });
    const dead = await poll(async () => {
      const s = await d.client.sessions.get({ id: hog.id });
      return s.state === 'exited' ? s : null;
    }, 30_000, 'memory hog to be killed');
    expect(dead.exitCode).toBe(137);
    expect((await inspect(hog.containerId!)).State.OOMKilled).toBe(true);
  });

  it('a container that cannot be created or started fails its session with a code, and the daemon carries on', async () => {
    const { d, repo } = await startWithProject();
    await using _ = d;
    const c = d.client;
    const failures: [string, string][] = [];
    const reading = (async () => {
      for await (const e of c.events({})) {
        if (e.type === 'session.state' && e.data.session.state === 'failed') failures.push([e.data.session.agent, e.data.session.error!.code]);
        if (failures.length === 2) return;
      }
    })();

    // A missing image fails fast, before any session exists, and says how to build it.
    await c.agents.define({ name: 'ghost', image: 'berth-test-no-such-image:1', command: ['true'] });
    const err = (await c.sessions.start({ project: 'web', agent: 'ghost' }).catch((e: unknown) => e)) as BerthError;
    expect(err.code).toBe('IMAGE_NOT_FOUND');
    expect(err.hint).toMatch(/berth image build berth-test-no-such-image:1/);
    expect((await c.sessions.list({})).items.filter((x) => x.agent === 'ghost')).toEqual([]);

    // An image that disappears later fails the session in the reconciler instead.
    const tmp = `berth-test-tmp-${Date.now()}:1`;
    await docker('tag', 'berth-test-busybox:latest', tmp);
    await c.agents.define({ name: 'fleeting', image: tmp, command: sh('sleep 3600') });
    const fl = await c.sessions.start({ project: 'web', agent: 'fleeting' });
    await c.sessions.stop({ id: fl.id, timeoutSec: 1 });
    await docker('rmi', tmp);
    expect((await c.sessions.restart({ id: fl.id }).catch((e: unknown) => e as BerthError)).code).toBe('IMAGE_NOT_FOUND');
    expect(await c.sessions.get({ id: fl.id })).toMatchObject({ state: 'failed', error: { code: 'IMAGE_NOT_FOUND' } });

    await c.agents.define({ name: 'badcap', command: ['true'], capAdd: ['NOT_A_CAP'] });
    expect(((await c.sessions.start({ project: 'web', agent: 'badcap' }).catch((e: unknown) => e)) as BerthError).code).toBe('CONTAINER_CREATE_FAILED');

    await reading;
    expect(failures.sort()).toEqual([
      ['badcap', 'CONTAINER_CREATE_FAILED'],
      ['fleeting', 'IMAGE_NOT_FOUND'],
    ]);
    // A failed session is not retried in a loop; a restart after fixing the cause works.
    await new Promise((r) => setTimeout(r, 1000));
    const badcap = (await c.sessions.list({ state: 'failed' })).items.find((s) => s.agent === 'badcap')!;
    expect(badcap.restartCount).toBe(0);
    await c.agents.define({ name: 'badcap', command: sh('sleep 3600'), capAdd: ['NET_BIND_SERVICE'] });
    const fixed = await c.sessions.restart({ id: badcap.id });
    expect(fixed).toMatchObject({ state: 'running', error: null });
    expect((await inspect(fixed.containerId!)).HostConfig.CapAdd).toEqual(['NET_BIND_SERVICE']);

    // An agent whose program does not exist starts (under init), exits 127 and is retried with backoff.
    await c.agents.define({ name: 'nobin', command: ['/no/such/program'] });
    const nobin = await c.sessions.start({ project: 'web', agent: 'nobin' });
    const crashed = await poll(async () => {
      const x = await c.sessions.get({ id: nobin.id });
      return x.state === 'exited' ? x : null;
    });
    expect(crashed.exitCode).toBe(127);
    expect(crashed.nextRestartAt).not.toBeNull();

    // The project's directory vanished: a clear error, not a crash.
    await rm(repo, { recursive: true, force: true });
    expect(((await c.sessions.start({ project: 'web', agent: 'nobin' }).catch((e: unknown) => e)) as BerthError).code).toBe('PATH_NOT_FOUND');
    expect((await c.daemon.status()).pid).toBe(d.pid);
  });

  it('an OCI runtime the engine lacks fails with the runtimes it has', async () => {
    const { d } = await startWithProject({ env: { AGENT_RUNTIME: 'no-such-runtime' } });
    await using _ = d;
    await d.client.agents.define({ name: 'a', command: sh('sleep 1') });
    const err = (await d.client.sessions.start({ project: 'web', agent: 'a' }).catch((e: unknown) => e)) as BerthError;
    expect(err.code).toBe('RUNTIME_NOT_FOUND');
    const s = (await d.client.sessions.list({})).items[0]!;
    expect(s.error!.message).toMatch(/no-such-runtime.*runc/);
  });

  it('resolves secrets by name from a 0600 file, never returning or logging them', async () => {
    const { d } = await startWithProject();
    await using _ = d;
    const value = 'sk-test-9f8e7d6c5b4a';
    await writeFile(join(d.home, 'secrets.yaml'), `anthropic: ${value}\n`, { mode: 0o600 });
    const a = await d.client.agents.define({ name: 'keyed', command: sh('sleep 3600'), secrets: { ANTHROPIC_API_KEY: 'anthropic' } });
    expect(JSON.stringify(a)).not.toContain(value);
    const s = await d.client.sessions.start({ project: 'web', agent: 'keyed' });
    expect((await d.client.sessions.exec({ id: s.id, cmd: sh('echo "$ANTHROPIC_API_KEY"') })).stdout).toBe(`${value}\n`);
    expect(JSON.stringify(await d.client.sessions.get({ id: s.id }))).not.toContain(value);
    expect(JSON.stringify(await d.client.sessions.list({}))).not.toContain(value);
    expect(d.output).not.toContain(value);
    const { readFile } = await import('node:fs/promises');
    expect((await readFile(join(d.home, 'berth.db'))).includes(value)).toBe(false);

    await chmod(join(d.home, 'secrets.yaml'), 0o644);
    const err = (await d.client.sessions.start({ project: 'web', agent: 'keyed' }).catch((e: unknown) => e)) as BerthError;
    expect(err.code).toBe('SECRETS_FILE_INSECURE');
    await d.client.agents.define({ name: 'missing', command: ['true'], secrets: { X: 'nope' } });
    await chmod(join(d.home, 'secrets.yaml'), 0o600);
    expect(((await d.client.sessions.start({ project: 'web', agent: 'missing' }).catch((e: unknown) => e)) as BerthError).code).toBe('SECRET_NOT_FOUND');
  });

  it('one network per project: sessions of a project reach each other, other projects cannot; internal and none', async () => {
    const { d } = await startWithProject();
    await using _ = d;
    const { makeRepo } = await import('../helpers/daemon.js');
    await d.client.projects.add({ name: 'api', path: await makeRepo(join(d.home, 'projects', 'api')) });
    await d.client.agents.define({ name: 'server', command: sh('while true; do echo hi | nc -l -p 8080; done') });
    await d.client.agents.define({ name: 'idle', command: sh('sleep 3600') });
    const srv = await d.client.sessions.start({ project: 'web', agent: 'server' });
    const ip = (await inspect(srv.containerId!)).NetworkSettings.Networks[networkName('web', false, d.instanceId!)].IPAddress as string;
    const same = await d.client.sessions.start({ project: 'web', agent: 'idle' });
    const other = await d.client.sessions.start({ project: 'api', agent: 'idle' });
    const probe = `nc -w 2 ${ip} 8080 </dev/null`;
    expect((await d.client.sessions.exec({ id: same.id, cmd: sh(probe) })).stdout).toBe('hi\n');
    expect((await d.client.sessions.exec({ id: other.id, cmd: sh(probe) })).exitCode).not.toBe(0);

    await d.client.agents.define({ name: 'offline', command: sh('sleep 3600'), network: 'internal' });
    const off = await d.client.sessions.start({ project: 'web', agent: 'offline' });
    expect((await inspect(off.containerId!)).HostConfig.NetworkMode).toBe(networkName('web', true, d.instanceId!));
    expect(JSON.parse(await docker('network', 'inspect', networkName('web', true, d.instanceId!)))[0].Internal).toBe(true);
    await d.client.agents.define({ name: 'nonet', command: sh('sleep 3600'), network: 'none' });
    const none = await d.client.sessions.start({ project: 'web', agent: 'nonet' });
    expect((await inspect(none.containerId!)).HostConfig.NetworkMode).toBe('none');
    expect((await d.client.sessions.exec({ id: none.id, cmd: sh('ls /sys/class/net') })).stdout.trim()).toBe('lo');
  });

  it('AGENT_DOCKER_ACCESS=socket mounts the engine socket, with a warning at startup', async () => {
    const { d } = await startWithProject({ env: { AGENT_DOCKER_ACCESS: 'socket' } });
    await using _ = d;
    expect(d.output).toMatch(/AGENT_DOCKER_ACCESS=socket.*root/);
    await d.client.agents.define({ name: 'a', command: sh('sleep 3600') });
    const s = await d.client.sessions.start({ project: 'web', agent: 'a' });
    const m = (await inspect(s.containerId!)).Mounts.find((x: { Destination: string }) => x.Destination === '/var/run/docker.sock');
    expect(m).toMatchObject({ Source: '/var/run/docker.sock', Type: 'bind' });
  });

  it('follows logs, and the SDK resumes following across a berthd kill -9 and restart', async () => {
    const { d } = await startWithProject();
    await d.client.agents.define({ name: 'counter', command: sh('i=0; while true; do echo "n $i"; i=$((i+1)); sleep 0.1; done') });
    const s = await d.client.sessions.start({ project: 'web', agent: 'counter' });
    const { BerthClient } = await import('@berth/client-sdk');
    const follower = new BerthClient({ socketPath: d.socket });
    const ctl = new AbortController();
    const got: LogLine[] = [];
    let restarted = false;
    const reading = (async () => {
      for await (const l of follower.logs(s.id, { follow: true, tail: 0, signal: ctl.signal })) {
        got.push(l);
        if (got.length >= 60 && restarted) break;
      }
    })();
    await poll(async () => got.length >= 10, 10_000, 'first lines');
    await d.stop('SIGKILL');
    const { startDaemon } = await import('../helpers/daemon.js');
    const d2 = await startDaemon({ home: d.home, ownsHome: true });
    restarted = true;
    try {
      await Promise.race([reading, new Promise((_, rej) => setTimeout(() => rej(new Error(`only ${got.length} lines`)), 20_000))]);
      ctl.abort();
      const ns = got.map((l) => Number(l.line.split(' ')[1]));
      // In order, no repeats, and no gap bigger than the lines the engine itself buffered meanwhile.
      for (let i = 1; i < ns.length; i++) expect(ns[i]).toBe(ns[i - 1]! + 1);
      expect((await d2.client.sessions.get({ id: s.id })).containerId).toBe(s.containerId);
    } finally {
      follower.close();
      await d2[Symbol.asyncDispose]();
    }
  });

  it('keeps serving while the engine is away and converges within seconds of its return', async () => {
    const dir = await tempDir('bt-px-');
    const proxy = new EngineProxy(join(dir, 'docker.sock'));
    await proxy.start();
    try {
      const { d } = await startWithProject({ env: { DOCKER_HOST: proxy.dockerHost } });
      await using _ = d;
      await d.client.agents.define({ name: 'a', command: sh('sleep 3600') });
      const s = await d.client.sessions.start({ project: 'web', agent: 'a' });

      await proxy.stop();
      // Desired state changes while the engine is unreachable: the RPC is accepted and waits.
      const stopping = d.client.sessions.stop({ id: s.id, timeoutSec: 1 });
      expect((await d.client.sessions.get({ id: s.id })).desired).toBe('stopped');
      expect((await d.client.daemon.status()).engine.available).toBe(false);
      expect((await inspect(s.containerId!)).State.Running).toBe(true);

      await new Promise((r) => setTimeout(r, 1500));
      const back = Date.now();
      await proxy.start();
      const done = await stopping;
      expect(done.state).toBe('stopped');
      expect(Date.now() - back).toBeLessThan(15_000);
      expect((await inspect(s.containerId!)).State.Running).toBe(false);
    } finally {
      await proxy.stop();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
