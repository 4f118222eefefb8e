import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BERTH_BIN, TEST_UID, makeRepo, poll, startDaemon, tempDir, type DaemonProcess } from '../helpers/daemon.js';

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
    // Commands as a shell would take them back, cut to the column unless --no-trunc.
    expect(add.stdout).toBe("defined agent fixer: claude -p 'fix it'\n");
    expect((await berth('agent', 'ls')).stdout).toMatch(/fixer\s+claude-agent-node\s+write\s+claude -p 'fix it'\n/);
    const script = "set -e; for i in 1 2 3; do echo \"it's $i\"; done; sleep 3600";
    expect((await berth('agent', 'add', 'looper', '--', 'sh', '-c', script)).code).toBe(0);
    const quoted = `sh -c 'set -e; for i in 1 2 3; do echo "it'\\''s $i"; done; sleep 3600'`;
    const ls = (await berth('agent', 'ls')).stdout;
    expect(ls).toContain(`looper  (default)          write        ${quoted.slice(0, 47)}…\n`);
    expect((await berth('agent', 'ls', '--no-trunc')).stdout).toContain(`${quoted}\n`);
    expect((await berth('agent', 'show', 'looper')).stdout).toContain(`command  ${quoted}\n`);
    // What the shell gives back is the argv berth stored.
    const { stdout: back } = await exec('sh', ['-c', `printf '%s\\n' ${quoted}`]);
    expect(back).toBe(`sh\n-c\n${script}\n`);
    expect((await berth('agent', 'rm', 'looper')).code).toBe(0);
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
    expect(usage.stderr).toMatch(/error\[INVALID_PARAMS\]: give either PATH or --git URL/);
    const unknown = await berth('frobnicate');
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(/unknown command/);
  });

  it('says how to start berthd when nothing listens', async () => {
    const home = await tempDir();
    const r = await exec(process.execPath, [BERTH_BIN, 'status'], { env: { PATH: process.env.PATH, HOME: home, BERTH_HOME: home } }).catch(
      (e: { code: number; stderr: string }) => e,
    );
    const { rm } = await import('node:fs/promises');
    await rm(home, { recursive: true, force: true });
    expect((r as { code: number }).code).toBe(1);
    expect((r as { stderr: string }).stderr).toMatch(/error\[DAEMON_UNREACHABLE\].*berth\.sock.*\n  hint: Start berthd/);
  });

  it('a socket it may not use, and a path that is no socket, each get their own error and hint', async () => {
    const { mkdir, writeFile, rm } = await import('node:fs/promises');
    const other = await tempDir();
    await mkdir(join(other, 'dir'));
    await writeFile(join(other, 'file'), '');
    for (const path of [join(other, 'file'), join(other, 'dir')]) {
      const r = await berth('--json', '--socket', path, 'ps');
      expect(JSON.parse(r.stderr)).toMatchObject({ error: { code: 'DAEMON_UNREACHABLE', details: { socket: path } } });
      expect(JSON.parse(r.stderr).error.message).toMatch(/is not a socket/);
    }
    await rm(other, { recursive: true, force: true });
    // Another user's berthd (its home is 0700, its socket 0600): not "start berthd", but whose it is.
    const r = await exec(process.execPath, [BERTH_BIN, '--json', '--socket', d.socket, 'ps'], { uid: TEST_UID, gid: TEST_UID, env: { PATH: process.env.PATH, HOME: '/tmp' } }).catch(
      (e: { code: number; stderr: string }) => e,
    );
    expect((r as { code: number }).code).toBe(1);
    const e = JSON.parse((r as { stderr: string }).stderr).error;
    expect(e).toMatchObject({ code: 'DAEMON_UNREACHABLE', details: { errno: 'EACCES' } });
    expect(e.hint).toMatch(/another user/);
  });

  it('usage errors speak in flags, never RPC fields, also under --json, before reaching berthd', async () => {
    const cases: [string[], string][] = [
      [['logs', 'x', '-n', 'abc'], '--tail'],
      [['stop', 'x', '-t', 'abc'], '--time'],
      [['exec', 'x', '--timeout', '0', '--', 'true'], '--timeout'],
      [['agent', 'add', 'a', '--restart', 'sometimes', '--', 'sh'], '--restart'],
      [['agent', 'add', 'a', '--pids', 'many', '--', 'sh'], '--pids'],
      [['start', 'web', '--agent', 'a', '--priority', '5000'], '--priority'],
    ];
    for (const [args, flag] of cases) {
      const r = await berth(...args);
      expect(r.code, args.join(' ')).toBe(1);
      expect(r.stderr).toMatch(new RegExp(`^error\\[INVALID_PARAMS\\]: ${flag} `));
      expect(r.stderr).not.toMatch(/RPC|HTTP|restartPolicy|timeoutSec|tail:/);
      const j = await berth('--json', ...args);
      expect(JSON.parse(j.stderr), args.join(' ')).toMatchObject({ error: { code: 'INVALID_PARAMS' } });
    }
    const unknown = await berth('--json', 'ps', '--bogus');
    expect(unknown.code).not.toBe(0);
    expect(JSON.parse(unknown.stderr)).toMatchObject({ error: { code: 'INVALID_PARAMS', message: "unknown option '--bogus'" } });
  });

  it('--version, -q (ids or names only) on ps, images, project ls and agent ls, image ls, and the policies in show', async () => {
    expect((await berth('--version')).stdout).toMatch(/^\d+\.\d+\.\d+\n$/);
    expect((await berth('project', 'add', 'quiet', join(d.home, 'projects', 'web'))).code).toBe(0);
    expect((await berth('agent', 'add', 'q1', '--restart', 'never', '--', 'sh', '-c', 'sleep 1000')).code).toBe(0);
    expect((await berth('project', 'ls', '-q')).stdout).toBe('quiet\n');
    expect((await berth('agent', 'ls', '-q')).stdout).toBe('q1\n');
    expect((await berth('ps', '-q', '-a')).stdout).toBe('');
    const images = await berth('images', '-q');
    expect(images.code).toBe(0);
    // Other test files build and untag images meanwhile: the two listings agree once nothing moved between them.
    await poll(async () => (await berth('image', 'ls', '-q')).stdout === (await berth('images', '-q')).stdout, 60_000, 'image ls -q to list what images -q lists');
    // --json wins over -q: the whole objects.
    expect(JSON.parse((await berth('--json', 'agent', 'ls', '-q')).stdout)).toMatchObject([{ name: 'q1' }]);
    expect((await berth('agent', 'show', 'q1')).stdout).toMatch(/^restart\s+never$/m);
    const shown = (await berth('project', 'show', 'quiet')).stdout;
    expect(shown).toMatch(/^worktrees\s+always$/m);
    expect(shown).toMatch(/^branch\s+/m);
    await berth('agent', 'rm', 'q1');
    await berth('project', 'rm', 'quiet');
  });
});

describe('berth CLI: sessions', () => {
  it('start | ps | logs | exec | inspect | stop | restart | rm', async () => {
    const { startWithProject, sh } = await import('../helpers/daemon.js');
    const { d } = await startWithProject();
    await using _ = d;
    const berth = async (...args: string[]) => {
      try {
        const r = await exec(process.execPath, [BERTH_BIN, '--socket', d.socket, ...args]);
        return { code: 0, stdout: r.stdout, stderr: r.stderr };
      } catch (err) {
        const e = err as { code: number; stdout: string; stderr: string };
        return { code: e.code, stdout: e.stdout, stderr: e.stderr };
      }
    };
    await d.client.agents.define({ name: 'talker', command: sh('echo hello from agent; echo warn >&2; sleep 3600') });

    const started = await berth('start', 'web', '--agent', 'talker', '--name', 'chat');
    expect(started.code, started.stderr).toBe(0);
    expect(started.stdout).toMatch(/^[0-9a-f]{12}  chat  running/);
    const json = JSON.parse((await berth('--json', 'inspect', 'chat')).stdout);
    expect(json).toMatchObject({ name: 'chat', state: 'running', agent: 'talker' });

    const ps = await berth('ps');
    expect(ps.stdout).toMatch(/^ID\s+NAME\s+PROJECT\s+AGENT\s+MODE\s+STATUS\s+ACTIVITY\s+RESTARTS\s+TOKENS\s+CREATED\n[0-9a-f]{12}\s+chat\s+web\s+talker\s+write\s+running/);

    await poll(async () => (await berth('logs', 'chat')).stdout.includes('hello from agent'), 10_000, 'logs');
    const logs = await berth('logs', 'chat');
    expect(logs.stdout).toBe('hello from agent\n');
    expect(logs.stderr).toBe('warn\n');
    const jl = (await berth('--json', 'logs', 'chat')).stdout.trim().split('\n').map((l) => JSON.parse(l));
    expect(jl.map((l: { stream: string }) => l.stream).sort()).toEqual(['stderr', 'stdout']);

    const ex = await berth('exec', 'chat', '--', 'sh', '-c', 'echo out; exit 3');
    expect(ex).toMatchObject({ code: 3, stdout: 'out\n' });

    expect((await berth('stop', 'chat', '-t', '1')).stdout).toBe('chat stopped\n');
    expect((await berth('ps')).stdout).toMatch(/no running sessions/);
    expect((await berth('ps', '-a')).stdout).toMatch(/chat\s+web\s+talker\s+write\s+stopped/);
    expect((await berth('restart', 'chat')).stdout).toMatch(/^chat running/);
    // A running session is refused, as docker rm refuses a running container; --stop stops it first.
    const refused = await berth('rm', 'chat');
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/error\[SESSION_RUNNING\]/);
    expect(refused.stderr).toContain('berth rm --stop');
    expect(JSON.parse((await berth('--json', 'inspect', 'chat')).stdout).state).toBe('running');
    expect((await berth('rm', '--stop', json.id.slice(0, 6))).stdout).toBe(`removed session chat (${json.id})\n  branch berth/chat was fully merged into main and is deleted\n`);
    const gone = await berth('inspect', 'chat');
    expect(gone.code).toBe(1);
    expect(gone.stderr).toMatch(/error\[SESSION_NOT_FOUND\]/);
  });

});
