import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import Docker from 'dockerode';
import { BerthError } from '@berth/client-sdk';
import { afterEach, describe, expect, it } from 'vitest';
import { LABELS, networkLabels, networkName } from '../../src/runtime/labels.js';
import { TEST_LABEL, docker } from '../helpers/docker.js';
import { makeRepo, sh, startWithProject, type DaemonProcess } from '../helpers/daemon.js';

const engine = new Docker({ socketPath: '/var/run/docker.sock' });
const inspect = async (id: string) => JSON.parse(await docker('inspect', id))[0];
const inspectNetwork = async (id: string) => JSON.parse(await docker('network', 'inspect', id))[0];
/** A fresh project name per run, so concurrent or crashed runs never share a network name. */
const fresh = (p: string) => `${p}${randomBytes(3).toString('hex')}`;

/** Ids of the networks named exactly `name` (the engine's name filter matches substrings). */
async function networksNamed(name: string): Promise<string[]> {
  const out = await docker('network', 'ls', '--no-trunc', '--filter', `name=${name}`, '--format', '{{.ID}} {{.Name}}');
  return out
    .split('\n')
    .filter(Boolean)
    .map((l) => l.split(' '))
    .filter(([, n]) => n === name)
    .map(([id]) => id!);
}

/** Networks this file made by hand (the daemons' own go with their instance in DaemonProcess cleanup). */
const handMade: string[] = [];
async function handMake(name: string, opts: { internal?: boolean; labels?: Record<string, string> } = {}): Promise<string> {
  // CheckDuplicate false: engine 20.10 then makes a second network of a name, as racing creates do.
  const n = await engine.createNetwork({ Name: name, Driver: 'bridge', Internal: opts.internal ?? false, CheckDuplicate: false, Labels: { [TEST_LABEL]: 'true', ...opts.labels } });
  handMade.push(n.id);
  return n.id;
}

afterEach(async () => {
  for (const id of handMade.splice(0)) await docker('network', 'rm', id).catch(() => {});
});

const codeOf = async (p: Promise<unknown>) => ((await p.catch((e: unknown) => e)) as BerthError).code;

async function addProject(d: DaemonProcess, name: string): Promise<void> {
  await d.client.projects.add({ name, path: await makeRepo(join(d.home, 'projects', name)) });
}

describe('per-project networks', () => {
  it("threat 7: project x's internal network and project x-internal's bridge are different networks; x's agent sits on an Internal one and cannot reach the other", async () => {
    const x = fresh('x');
    const xi = `${x}-internal`;
    const { d } = await startWithProject({}, x);
    await using _ = d;
    await addProject(d, xi);
    await d.client.agents.define({ name: 'server', command: sh('while true; do echo hi | nc -l -p 8080; done') });
    await d.client.agents.define({ name: 'idle', command: sh('sleep 3600') });
    await d.client.agents.define({ name: 'offline', command: sh('sleep 3600'), network: 'internal' });

    const srv = await d.client.sessions.start({ project: xi, agent: 'server' });
    const off = await d.client.sessions.start({ project: x, agent: 'offline' });
    const srvInfo = await inspect(srv.containerId!);
    const offInfo = await inspect(off.containerId!);
    expect(Object.keys(srvInfo.NetworkSettings.Networks)).toEqual([networkName(xi, false, d.instanceId!)]);
    expect(Object.keys(offInfo.NetworkSettings.Networks)).toEqual([networkName(x, true, d.instanceId!)]);
    const srvNet = srvInfo.NetworkSettings.Networks[networkName(xi, false, d.instanceId!)].NetworkID as string;
    const offNet = offInfo.NetworkSettings.Networks[networkName(x, true, d.instanceId!)].NetworkID as string;
    expect(offNet).not.toBe(srvNet);
    const offNetwork = await inspectNetwork(offNet);
    expect(offNetwork.Internal).toBe(true);
    expect(offNetwork.Labels).toMatchObject(networkLabels(d.instanceId!, x, true));
    expect((await inspectNetwork(srvNet)).Internal).toBe(false);

    const ip = srvInfo.NetworkSettings.Networks[networkName(xi, false, d.instanceId!)].IPAddress as string;
    const probe = `nc -w 2 ${ip} 8080 </dev/null`;
    // The probe works: a session of the server's own project gets the answer.
    const peer = await d.client.sessions.start({ project: xi, agent: 'idle' });
    expect((await d.client.sessions.exec({ id: peer.id, cmd: sh(probe) })).stdout).toBe('hi\n');
    // x's no-egress agent gets nothing: not the port, not a ping.
    const fromX = await d.client.sessions.exec({ id: off.id, cmd: sh(probe) });
    expect(fromX.exitCode).not.toBe(0);
    expect(fromX.stdout).not.toContain('hi');
    expect((await d.client.sessions.exec({ id: off.id, cmd: sh(`ping -c 1 -W 2 ${ip}`) })).exitCode).not.toBe(0);
  });

  it('threat 7: a same-named network berth did not make (no labels, or not Internal) is never joined: NETWORK_CONFLICT, the network is left as it was, and removing it lets the session start', async () => {
    const p = fresh('f');
    const { d } = await startWithProject({}, p);
    await using _ = d;
    await d.client.agents.define({ name: 'idle', command: sh('sleep 3600') });
    await d.client.agents.define({ name: 'offline', command: sh('sleep 3600'), network: 'internal' });

    // A hand-made bridge with berth's name and none of its labels.
    const bridge = await handMake(networkName(p, false, d.instanceId!));
    expect(await codeOf(d.client.sessions.start({ project: p, agent: 'idle' }))).toBe('NETWORK_CONFLICT');
    // A network with all of berth's labels, for this very daemon and project, but with egress.
    const leaky = await handMake(networkName(p, true, d.instanceId!), { labels: networkLabels(d.instanceId!, p, true) });
    expect(await codeOf(d.client.sessions.start({ project: p, agent: 'offline' }))).toBe('NETWORK_CONFLICT');

    const failed = (await d.client.sessions.list({ project: p })).items;
    expect(failed.map((s) => [s.agent, s.state, s.error?.code]).sort()).toEqual([
      ['idle', 'failed', 'NETWORK_CONFLICT'],
      ['offline', 'failed', 'NETWORK_CONFLICT'],
    ]);
    for (const [id, internal] of [
      [bridge, false],
      [leaky, false],
    ] as const) {
      const n = await inspectNetwork(id);
      expect(n.Containers).toEqual({});
      expect(n.Internal).toBe(internal);
    }
    expect((await inspectNetwork(bridge)).Labels).toEqual({ [TEST_LABEL]: 'true' });
    expect(await networksNamed(networkName(p, false, d.instanceId!))).toEqual([bridge]);
    expect(await networksNamed(networkName(p, true, d.instanceId!))).toEqual([leaky]);

    // Doing what the error says (remove the network) and restarting is enough.
    await docker('network', 'rm', bridge, leaky);
    for (const s of failed) expect((await d.client.sessions.restart({ id: s.id })).state).toBe('running');
    const made = await networksNamed(networkName(p, true, d.instanceId!));
    expect(made).toHaveLength(1);
    expect((await inspectNetwork(made[0]!)).Internal).toBe(true);

    // Removing a project removes only networks berth made: a hand-made one of its name stays.
    const q = fresh('q');
    await addProject(d, q);
    const foreign = await handMake(networkName(q, false, d.instanceId!));
    await d.client.projects.remove({ name: q });
    expect(await networksNamed(networkName(q, false, d.instanceId!))).toEqual([foreign]);
  });

  it('threat 12: eight concurrent first write starts on a new project all run, on exactly one network', async () => {
    const p = fresh('r');
    const { d } = await startWithProject({}, p);
    await using _ = d;
    await d.client.agents.define({ name: 'idle', command: sh('sleep 3600') });
    const started = await Promise.all(Array.from({ length: 8 }, () => d.client.sessions.start({ project: p, agent: 'idle', mode: 'write' })));
    expect(started.map((s) => s.state)).toEqual(Array(8).fill('running'));
    const nets = await networksNamed(networkName(p, false, d.instanceId!));
    expect(nets).toHaveLength(1);
    for (const s of started) {
      expect((await inspect(s.containerId!)).NetworkSettings.Networks[networkName(p, false, d.instanceId!)].NetworkID).toBe(nets[0]);
    }
    await Promise.all(started.map((s) => d.client.sessions.remove({ id: s.id, force: true })));
    await d.client.projects.remove({ name: p });
    expect(await networksNamed(networkName(p, false, d.instanceId!))).toEqual([]);

    // The daemon remembered that network's id; a project added again under the name gets a new one.
    await d.client.projects.add({ name: p, path: join(d.home, 'projects', p) });
    const again = await d.client.sessions.start({ project: p, agent: 'idle', mode: 'write' });
    expect(again.state).toBe('running');
    const renewed = await networksNamed(networkName(p, false, d.instanceId!));
    expect(renewed).toHaveLength(1);
    expect(renewed[0]).not.toBe(nets[0]);
    expect((await inspect(again.containerId!)).NetworkSettings.Networks[networkName(p, false, d.instanceId!)].NetworkID).toBe(renewed[0]);
  });

  it('threat 12: duplicate berth networks of one name (an older berthd, a racing create) are resolved to the oldest; sessions start and removing the project removes every duplicate', async () => {
    const p = fresh('u');
    const { d } = await startWithProject({}, p);
    await using _ = d;
    await d.client.agents.define({ name: 'idle', command: sh('sleep 3600') });
    const bridgeName = networkName(p, false, d.instanceId!);
    const oldest = await handMake(bridgeName, { labels: networkLabels(d.instanceId!, p, false) });
    await new Promise((r) => setTimeout(r, 20));
    // As an earlier berthd made it: without the kind label.
    const { [LABELS.network]: _kind, ...legacy } = networkLabels(d.instanceId!, p, false);
    const newer = await handMake(bridgeName, { labels: legacy });
    // Duplicates of the internal name too, which no session uses: project removal must still clear them.
    for (let i = 0; i < 2; i++) await handMake(networkName(p, true, d.instanceId!), { internal: true, labels: networkLabels(d.instanceId!, p, true) });
    expect(await networksNamed(bridgeName)).toHaveLength(2);
    await expect(docker('network', 'rm', bridgeName)).rejects.toThrow(/ambiguous/);

    const started = await Promise.all(Array.from({ length: 3 }, () => d.client.sessions.start({ project: p, agent: 'idle', mode: 'write' })));
    expect(started.map((s) => s.state)).toEqual(['running', 'running', 'running']);
    expect(await networksNamed(bridgeName)).toEqual([oldest]);
    expect(handMade).toContain(newer);
    for (const s of started) expect((await inspect(s.containerId!)).NetworkSettings.Networks[bridgeName].NetworkID).toBe(oldest);

    await Promise.all(started.map((s) => d.client.sessions.remove({ id: s.id, force: true })));
    await d.client.projects.remove({ name: p });
    expect(await networksNamed(bridgeName)).toEqual([]);
    expect(await networksNamed(networkName(p, true, d.instanceId!))).toEqual([]);
  });
});
