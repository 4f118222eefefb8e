import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BERTH_BIN, makeRepo, startDaemon, tempDir, type DaemonProcess } from '../helpers/daemon.js';

const exec = promisify(execFile);

/** The real `berth` binary against a real berthd. */
describe('berth CLI', () => {
  let d: DaemonProcess;
  const berth = async (...args: string[]) => {
    try {
      const r = await exec(process.execPath, [BERTH_BIN, '--socket', d.socket, ...args], { env: { PATH: process.env.PATH, HOME: d.home } });
      return { code: 0, stdout: r.stdout, stderr: r.stderr };
    } catch (err) {
      const e = err as { code: number; stdout: string; stderr: string };
      return { code: e.code, stdout: e.stdout, stderr: e.stderr };
    }
  };

  beforeAll(async () => {
    d = await startDaemon();
    await makeRepo(join(d.home, 'projects', 'web'));
  });
  afterAll(async () => {
    await d?.[Symbol.asyncDispose]();
  });

  it('status shows the daemon, engine and checks', async () => {
    const r = await berth('status');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`berthd \\S+  pid ${d.pid}`));
    expect(r.stdout).toMatch(/engine\s+Docker/);
    expect(r.stdout).toMatch(/ok\s+default-image/);
  });

  it('--json prints only JSON on stdout, before or after the command', async () => {
    for (const args of [['--json', 'status'], ['status', '--json']]) {
      const r = await berth(...args);
      expect(r.code).toBe(0);
      expect(JSON.parse(r.stdout)).toMatchObject({ pid: d.pid, engine: { available: true } });
    }
  });

  it('project add | ls | show | rm, resolving a relative path against the cwd', async () => {
    const { stdout } = await exec(process.execPath, [BERTH_BIN, '--socket', d.socket, 'project', 'add', 'web', 'web'], {
      cwd: join(d.home, 'projects'),
    });
    expect(stdout).toContain(`added project web (${join(d.home, 'projects', 'web')})`);
    const ls = await berth('project', 'ls');
    expect(ls.stdout).toMatch(/^NAME\s+PATH\s+ADDED\nweb\s+/);
    const json = JSON.parse((await berth('project', 'ls', '--json')).stdout) as { name: string }[];
    expect(json.map((p) => p.name)).toEqual(['web']);
    expect(JSON.parse((await berth('--json', 'project', 'show', 'web')).stdout)).toMatchObject({ name: 'web' });
    expect((await berth('project', 'rm', 'web')).stdout).toContain('removed project web');
    expect((await berth('project', 'ls')).stdout).toBe('no projects\n');
  });

  it('agent add | ls | show | rm with env, limits and a command after --', async () => {
    const add = await berth('agent', 'add', 'fixer', '--image', 'claude-agent-node', '-e', 'A=1', '-e', 'B=x=y', '--memory', '1g', '--cpus', '0.5', '--pids', '64', '--', 'claude', '-p', 'fix it');
    expect(add.code, add.stderr).toBe(0);
    const a = JSON.parse((await berth('--json', 'agent', 'show', 'fixer')).stdout);
    expect(a).toMatchObject({
      command: ['claude', '-p', 'fix it'],
      env: { A: '1', B: 'x=y' },
      limits: { memory: '1g', cpus: 0.5, pids: 64 },
      image: 'claude-agent-node',
      readOnly: false,
    });
    expect((await berth('agent', 'ls')).stdout).toMatch(/fixer\s+claude-agent-node\s+write\s+claude -p fix it/);
    expect((await berth('agent', 'rm', 'fixer')).code).toBe(0);
  });

  it('errors print code, message and hint on stderr and exit non-zero', async () => {
    const r = await berth('project', 'show', 'ghost');
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/^error\[PROJECT_NOT_FOUND\]: no project named ghost\n  hint: .*berth project/);

    const j = await berth('--json', 'agent', 'add', 'Bad', '--', 'x');
    expect(j.code).toBe(1);
    expect(j.stdout).toBe('');
    expect(JSON.parse(j.stderr)).toMatchObject({ error: { code: 'INVALID_NAME' } });

    const usage = await berth('project', 'add', 'only-name');
    expect(usage.code).toBe(1);
    expect(usage.stderr).toMatch(/missing required argument/);
  });

  it('says how to start berthd when nothing listens', async () => {
    const home = await tempDir();
    const r = await exec(process.execPath, [BERTH_BIN, 'status'], { env: { PATH: process.env.PATH, HOME: home, BERTH_HOME: home } }).catch(
      (e: { code: number; stderr: string }) => e,
    );
    expect((r as { code: number }).code).toBe(1);
    expect((r as { stderr: string }).stderr).toMatch(/error\[DAEMON_UNREACHABLE\].*berth\.sock.*\n  hint: Start berthd/);
  });
});
