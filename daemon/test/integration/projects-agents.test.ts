import { mkdir, rm, symlink } from 'node:fs/promises';
import { join } from 'node:path';
import { BerthError, type BerthEvent } from '@berth/client-sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeRepo, startDaemon, tempDir, type DaemonProcess } from '../helpers/daemon.js';

const codeOf = async (p: Promise<unknown>) => {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(BerthError);
    return (err as BerthError).code;
  }
  throw new Error('expected a BerthError');
};

describe('projects and agents over RPC, on real git repositories', () => {
  let d: DaemonProcess;
  let root: string;
  let outside: string;

  beforeAll(async () => {
    d = await startDaemon();
    root = join(d.home, 'projects');
    outside = await tempDir('bt-out-');
    await makeRepo(join(root, 'web'));
    await makeRepo(join(root, 'api'));
    await makeRepo(join(outside, 'secret'));
    await mkdir(join(root, 'plain'), { recursive: true });
  });
  afterAll(async () => {
    await d?.[Symbol.asyncDispose]();
    await rm(outside, { recursive: true, force: true });
  });

  it('adds, lists, gets and removes a project, leaving the repository alone', async () => {
    const p = await d.client.projects.add({ name: 'web', path: join(root, 'web') });
    expect(p).toMatchObject({ name: 'web', path: join(root, 'web') });
    expect((await d.client.projects.list()).map((x) => x.name)).toEqual(['web']);
    expect(await d.client.projects.get({ name: 'web' })).toEqual(p);
    expect(await d.client.projects.remove({ name: 'web' })).toEqual({ removed: 'web' });
    expect(await codeOf(d.client.projects.get({ name: 'web' }))).toBe('PROJECT_NOT_FOUND');
    const { execFileSync } = await import('node:child_process');
    expect(execFileSync('git', ['-c', 'safe.directory=*', 'log', '--oneline'], { cwd: join(root, 'web') }).toString()).toContain('init');
  });

  it('stores the symlink-free path', async () => {
    await symlink(join(root, 'api'), join(root, 'api-link'));
    const p = await d.client.projects.add({ name: 'api', path: join(root, 'api-link') });
    expect(p.path).toBe(join(root, 'api'));
    await d.client.projects.remove({ name: 'api' });
  });

  it('refuses a path escaping PROJECTS_ROOT via ..', async () => {
    expect(await codeOf(d.client.projects.add({ name: 'esc', path: `${root}/../../${outside.split('/').pop()}/secret` }))).toBe(
      'PATH_OUTSIDE_ROOT',
    );
  });

  it('refuses a path escaping PROJECTS_ROOT via a symlink', async () => {
    await symlink(join(outside, 'secret'), join(root, 'sneaky'));
    const err = await d.client.projects.add({ name: 'sneaky', path: join(root, 'sneaky') }).catch((e: unknown) => e as BerthError);
    expect(err).toBeInstanceOf(BerthError);
    expect((err as BerthError).code).toBe('PATH_OUTSIDE_ROOT');
    expect((err as BerthError).details).toMatchObject({ resolved: join(outside, 'secret') });
  });

  it('refuses what is not the top of a git work tree', async () => {
    expect(await codeOf(d.client.projects.add({ name: 'plain', path: join(root, 'plain') }))).toBe('NOT_A_GIT_REPO');
    await mkdir(join(root, 'web', 'sub'), { recursive: true });
    expect(await codeOf(d.client.projects.add({ name: 'sub', path: join(root, 'web', 'sub') }))).toBe('NOT_A_GIT_REPO');
  });

  it('refuses missing paths, relative paths, bad names and duplicates', async () => {
    expect(await codeOf(d.client.projects.add({ name: 'gone', path: join(root, 'nope') }))).toBe('PATH_NOT_FOUND');
    expect(await codeOf(d.client.projects.add({ name: 'rel', path: 'web' }))).toBe('INVALID_PARAMS');
    for (const bad of ['Web', '-web', 'we b', 'a'.repeat(64), '', 'web/x', '..']) {
      expect(await codeOf(d.client.projects.add({ name: bad, path: join(root, 'web') }))).toBe('INVALID_NAME');
    }
    expect(await codeOf(d.client.projects.get({ name: '../etc' }))).toBe('INVALID_NAME');
    await d.client.projects.add({ name: 'web', path: join(root, 'web') });
    expect(await codeOf(d.client.projects.add({ name: 'web', path: join(root, 'api') }))).toBe('PROJECT_EXISTS');
    expect(await codeOf(d.client.projects.add({ name: 'web2', path: join(root, 'web') }))).toBe('PROJECT_PATH_IN_USE');
    await d.client.projects.remove({ name: 'web' });
  });

  it('defines, redefines, lists and removes agents', async () => {
    const a = await d.client.agents.define({
      name: 'fixer',
      command: ['claude', '-p', 'fix the tests'],
      image: 'claude-agent-node',
      env: { ANTHROPIC_MODEL: 'opus' },
      role: 'writer',
      limits: { memory: '2g', cpus: 1.5, pids: 256 },
    });
    expect(a).toMatchObject({ name: 'fixer', readOnly: false, limits: { memory: '2g', cpus: 1.5, pids: 256 } });
    await new Promise((r) => setTimeout(r, 5));
    const b = await d.client.agents.define({ name: 'fixer', command: ['claude'], readOnly: true });
    expect(b.createdAt).toBe(a.createdAt);
    expect(b.updatedAt > a.updatedAt).toBe(true);
    expect(b).toMatchObject({ image: null, readOnly: true, env: {}, limits: {} });
    expect((await d.client.agents.list()).map((x) => x.name)).toContain('fixer');
    await d.client.agents.remove({ name: 'fixer' });
    expect(await codeOf(d.client.agents.get({ name: 'fixer' }))).toBe('AGENT_NOT_FOUND');
    expect(await codeOf(d.client.agents.remove({ name: 'fixer' }))).toBe('AGENT_NOT_FOUND');
  });

  it('refuses bad agent definitions with INVALID_PARAMS, naming the field', async () => {
    const bad = [
      { name: 'x', command: [] },
      { name: 'x', command: ['ls'], env: { 'BAD-NAME': 'v' } },
      { name: 'x', command: ['ls'], limits: { cpus: 0 } },
      { name: 'x', command: ['ls'], limits: { pids: 2 } },
      { name: 'x', command: ['ls'], image: 'has space' },
    ];
    for (const p of bad) {
      const err = (await d.client.agents.define(p as never).catch((e: unknown) => e)) as BerthError;
      expect(err.code, JSON.stringify(p)).toBe('INVALID_PARAMS');
      expect(err.details).toHaveProperty('issues');
    }
  });

  it('streams project and agent changes on /events, and replays with ?since', async () => {
    const ctl = new AbortController();
    const seen: BerthEvent[] = [];
    const reader = (async () => {
      for await (const e of d.client.events({ signal: ctl.signal })) {
        seen.push(e);
        if (e.type === 'agent.removed') break;
      }
    })();
    await new Promise((r) => setTimeout(r, 100));
    await d.client.projects.add({ name: 'evt', path: join(root, 'api') });
    await d.client.agents.define({ name: 'evt', command: ['true'] });
    await d.client.projects.remove({ name: 'evt' });
    await d.client.agents.remove({ name: 'evt' });
    await reader;
    ctl.abort();
    expect(seen.map((e) => e.type)).toEqual(['project.added', 'agent.defined', 'project.removed', 'agent.removed']);
    expect(seen.map((e) => e.seq)).toEqual([...seen.map((e) => e.seq)].sort((x, y) => x - y));

    const replay: BerthEvent[] = [];
    const ctl2 = new AbortController();
    for await (const e of d.client.events({ since: seen[0]!.seq, signal: ctl2.signal })) {
      replay.push(e);
      if (replay.length === 3) break;
    }
    ctl2.abort();
    expect(replay.map((e) => e.seq)).toEqual(seen.slice(1).map((e) => e.seq));
  });

  it('keeps projects and agents across a daemon restart', async () => {
    await d.client.projects.add({ name: 'keep', path: join(root, 'api') });
    await d.client.agents.define({ name: 'keep', command: ['true'] });
    await d.stop();
    d = await startDaemon({ home: d.home, ownsHome: true });
    expect((await d.client.projects.get({ name: 'keep' })).path).toBe(join(root, 'api'));
    expect((await d.client.agents.get({ name: 'keep' })).command).toEqual(['true']);
  });
});
