import { request } from 'node:http';
import type { Readable } from 'node:stream';
import { BerthError, type ExecStream, type Session } from '@berth/client-sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync, spawn } from 'node:child_process';
import { BERTH_BIN, TEST_UID, poll, sh, startWithProject, type DaemonProcess } from '../helpers/daemon.js';
import { runInPty } from '../helpers/pty.js';

/** Each wait on the terminal gives up after this long (a hang, never a timing assertion). */
const PTY_DEADLINE_SEC = 60 * (Number(process.env.BERTH_TEST_SLACK) || 3);

const codeOf = (p: Promise<unknown>) => p.then(() => 'ok', (e: unknown) => (e instanceof BerthError ? e.code : String(e)));

/** Everything a stream has delivered so far, as text. */
function reading(stream: Readable): { text: string; done: Promise<void> } {
  const r = { text: '', done: Promise.resolve() };
  stream.setEncoding('utf8');
  stream.on('data', (s: string) => (r.text += s));
  r.done = new Promise((resolve) => stream.once('end', resolve));
  return r;
}

/** The exec stream of `cmd` with its output read as it comes. */
async function attach(d: DaemonProcess, params: Parameters<DaemonProcess['client']['sessions']['execStream']>[0]) {
  const x: ExecStream = await d.client.sessions.execStream(params);
  return { x, out: reading(x.stdout), err: reading(x.stderr) };
}

/** The `sessions.exec` stream on the real engine: output as it comes, stdin, a terminal, exit codes, refusals. */
describe('exec stream', () => {
  let d: DaemonProcess;
  let s: Session;

  beforeAll(async () => {
    ({ d } = await startWithProject({}, `ex-${process.pid}`));
    await d.client.agents.define({ name: 'idle', command: sh('sleep 3600') });
    s = await d.client.sessions.start({ project: `ex-${process.pid}`, agent: 'idle', name: 'execs' });
  });
  afterAll(async () => {
    await d?.[Symbol.asyncDispose]();
  });

  it('streams output while the command runs, takes stdin, keeps stderr apart and ends with the exit code', async () => {
    // The command cannot end before it reads a line we send only once its first output arrived.
    const { x, out, err } = await attach(d, { id: s.id, cmd: sh('echo a; echo e1 >&2; read line; echo "b $line"; id -u; pwd; exit 7'), stdin: true });
    await poll(async () => out.text === 'a\n' && err.text === 'e1\n', 20_000, 'the first output while the command waits');
    x.stdin.write('go\n');
    expect(await x.exit).toBe(7);
    await Promise.all([out.done, err.done]);
    expect(out.text).toBe(`a\nb go\n${TEST_UID}\n/workspace\n`);
    expect(err.text).toBe('e1\n');
  });

  it('pipes stdin through to cat, a megabyte of it, and EOF ends the command', async () => {
    const { x, out } = await attach(d, { id: s.name, cmd: ['sh', '-c', 'cat | wc -c; cat /dev/null'], stdin: true });
    const chunk = Buffer.alloc(64 * 1024, 'x');
    for (let i = 0; i < 16; i++) if (!x.stdin.write(chunk)) await new Promise((r) => x.stdin.once('drain', r));
    x.stdin.end();
    expect(await x.exit).toBe(0);
    await out.done;
    expect(out.text.trim()).toBe(String(16 * 64 * 1024));

    const echo = await attach(d, { id: s.id, cmd: ['cat'], stdin: true });
    echo.x.stdin.end('round trip \u00e9\u2713\n');
    expect(await echo.x.exit).toBe(0);
    await echo.out.done;
    expect(echo.out.text).toBe('round trip \u00e9\u2713\n');
  });

  it('env and workdir reach the command; a command without stdin reads EOF', async () => {
    const { x, out } = await attach(d, { id: s.id, cmd: sh('echo "$GREETING"; pwd; cat; echo end'), env: { GREETING: 'hi there' }, workdir: '/tmp' });
    expect(await x.exit).toBe(0);
    await out.done;
    expect(out.text).toBe('hi there\n/tmp\nend\n');
  });

  it('gives a terminal of the asked size, resizes it, and its output is raw', async () => {
    const { x, out, err } = await attach(d, { id: s.id, cmd: ['sh'], tty: true, stdin: true, cols: 101, rows: 31 });
    x.stdin.write('stty size; tty; echo M$((6*7))K\n');
    await poll(async () => out.text.includes('M42K'), 20_000, 'the shell to answer');
    expect(out.text).toMatch(/\b31 101\r\n/);
    expect(out.text).toMatch(/\/dev\/pts\/\d+/);
    x.resize(120, 40);
    // The resize is applied before the input that follows it.
    x.stdin.write('stty size; echo R$((1+1))R\n');
    await poll(async () => out.text.includes('R2R'), 20_000, 'the shell to answer after the resize');
    expect(out.text).toMatch(/\b40 120\r\n/);
    x.stdin.write('exit 3\n');
    expect(await x.exit).toBe(3);
    await err.done;
    expect(err.text).toBe('');
  });

  it('refuses before upgrading: unknown session, bad params, a stopped session, a request that asks for no upgrade', async () => {
    expect(await codeOf(d.client.sessions.execStream({ id: 'no-such-session', cmd: ['true'] }))).toBe('SESSION_NOT_FOUND');
    expect(await codeOf(d.client.sessions.execStream({ id: s.id, cmd: [] }))).toBe('INVALID_PARAMS');
    expect(await codeOf(d.client.sessions.execStream({ id: s.id, cmd: ['true'], env: { 'BAD NAME': 'x' } }))).toBe('INVALID_PARAMS');
    expect(await codeOf(d.client.sessions.execStream({ id: s.id, cmd: ['true'], workdir: 'relative' }))).toBe('INVALID_PARAMS');
    expect(await codeOf(d.client.sessions.execStream({ id: s.id, cmd: ['x'.repeat(20_000)] }))).toBe('INVALID_PARAMS');

    const plain = await new Promise<{ status: number; body: { error: { code: string } } }>((resolve, reject) => {
      const req = request({ socketPath: d.socket, path: `/sessions/${s.id}/exec?cmd=true`, method: 'GET', agent: false }, (res) => {
        let t = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (t += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(t) }));
      });
      req.on('error', reject);
      req.end();
    });
    expect(plain.status).toBe(400);
    expect(plain.body.error.code).toBe('INVALID_REQUEST');

    await d.client.agents.define({ name: 'brief', command: sh('exit 0'), restartPolicy: 'never' });
    const gone = await d.client.sessions.start({ project: `ex-${process.pid}`, agent: 'brief', name: 'brief' });
    await poll(async () => (await d.client.sessions.get({ id: gone.id })).state === 'exited', 20_000, 'the brief agent to exit');
    expect(await codeOf(d.client.sessions.execStream({ id: gone.id, cmd: ['true'] }))).toBe('SESSION_NOT_RUNNING');
    await d.client.sessions.remove({ id: gone.id, force: true });
  });

  it('has no deadline unless asked: timeoutSec ends a command that runs past it with EXEC_TIMEOUT', async () => {
    const { x } = await attach(d, { id: s.id, cmd: ['sleep', '600'], timeoutSec: 1 });
    expect(await codeOf(x.exit)).toBe('EXEC_TIMEOUT');
  });

  it('a client that goes away hangs the command up, with a terminal or without: it is not left running', async () => {
    for (const tty of [true, false]) {
      const marker = `sleep 43${process.pid % 100}${tty ? 7 : 8}`;
      const running = async () => (await d.client.sessions.exec({ id: s.id, cmd: sh(`ps -o args | grep -c "^${marker}$" || true`) })).stdout.trim();
      const { x, out } = tty
        ? await attach(d, { id: s.id, cmd: ['sh'], tty: true, stdin: true })
        : await attach(d, { id: s.id, cmd: sh(`echo S$((2+3))S; ${marker}; echo never`) });
      if (tty) x.stdin.write(`echo S$((2+3))S; ${marker}\n`);
      await poll(async () => out.text.includes('S5S'), 20_000, 'the shell to start the sleep');
      await poll(async () => (await running()) === '1', 20_000, 'the sleep to run');
      x.close();
      expect(await x.exit.catch((e: Error) => e.name)).toBe('AbortError');
      await poll(async () => (await running()) === '0', 30_000, `the hung-up command to end (tty ${tty})`);
    }
  });

  describe('berth exec (the CLI)', () => {
    const berth = (...args: string[]) => [process.execPath, BERTH_BIN, '--socket', d.socket, ...args];
    const env = () => ({ PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: d.home, TERM: 'xterm' });

    it('-it on a pseudo-terminal: an interactive shell of the terminal size, the exit code passed through, the terminal restored', async () => {
      const r = await runInPty(berth('exec', '-it', s.name, '--', 'sh'), [{ send: 'echo $((6*7)); stty size; exit 3\r' }], {
        size: [33, 97],
        env: env(),
        deadlineSec: PTY_DEADLINE_SEC,
      });
      expect(r.output).toMatch(/\b42\r*\n/);
      expect(r.output).toMatch(/\b33 97\r*\n/);
      expect(r.exitCode).toBe(3);
      expect(r.cooked).toBe(true);
    });

    it('-it follows the window: a resize reaches the command', async () => {
      const r = await runInPty(
        berth('exec', '-it', s.id, '--', 'sh'),
        [
          { send: 'stty size; echo A$((1+1))A\r' },
          { expect: '24 80\\r*\\n[\\s\\S]*A2A' },
          { resize: [50, 132] },
          // SIGWINCH reaches the CLI on its own time: ask until the new size shows.
          { send: 'stty size\r', until: '50 132', everySec: 2 },
          { send: 'exit\r' },
        ],
        { size: [24, 80], env: env(), deadlineSec: PTY_DEADLINE_SEC },
      );
      expect(r.exitCode).toBe(0);
      expect(r.cooked).toBe(true);
    });

    it('-t without a terminal on stdin is a usage error, as with docker', async () => {
      const [bin, ...args] = berth('exec', '-t', s.id, '--', 'true');
      const child = spawn(bin!, args, { env: env(), stdio: ['pipe', 'pipe', 'pipe'] });
      let stderr = '';
      child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
      child.stdin.end();
      const code = await new Promise<number | null>((resolve) => child.once('close', resolve));
      expect(code).toBe(1);
      expect(stderr).toMatch(/^error\[INVALID_PARAMS\]: the input device is not a TTY/);
    });

    it('without -t: output printed as it comes, stderr on stderr, stdin with -i, the exit code passed through', async () => {
      const [bin, ...args] = berth('exec', '-i', s.id, '--', 'sh', '-c', 'echo a; echo e >&2; read x; echo "b $x"; exit 5');
      const child = spawn(bin!, args, { env: env(), stdio: ['pipe', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
      child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
      const closed = new Promise<number | null>((resolve) => child.once('close', resolve));
      try {
        // The command waits for a line we send only once its first output was printed.
        await poll(async () => stdout === 'a\n' && stderr === 'e\n', 20_000, 'the first output of berth exec');
        child.stdin.end('go\n');
        expect(await closed).toBe(5);
        expect(stdout).toBe('a\nb go\n');
        expect(stderr).toBe('e\n');
      } finally {
        child.kill();
      }
    });
  });
});

/** AGENT_MODE=local: the same stream over a child process; no terminal there, said by its code. */
describe('exec stream in local mode', () => {
  it('streams stdin and output of a local agent, refuses a terminal with EXEC_TTY_UNSUPPORTED, and hangs up on close', async () => {
    const { d } = await startWithProject({ env: { AGENT_MODE: 'local' } }, `exl-${process.pid}`);
    await using _ = d;
    await d.client.agents.define({ name: 'idle', command: sh('sleep 3600') });
    const s = await d.client.sessions.start({ project: `exl-${process.pid}`, agent: 'idle' });
    expect(await codeOf(d.client.sessions.execStream({ id: s.id, cmd: ['sh'], tty: true, stdin: true }))).toBe('EXEC_TTY_UNSUPPORTED');

    const { x, out, err } = await attach(d, { id: s.id, cmd: sh('echo a; echo e >&2; read line; echo "b $line $PWD"; exit 4'), stdin: true });
    await poll(async () => out.text === 'a\n' && err.text === 'e\n', 20_000, 'the first output while the command waits');
    x.stdin.end('go\n');
    expect(await x.exit).toBe(4);
    await out.done;
    expect(out.text).toBe(`a\nb go ${s.checkout!.dir}\n`);

    const marker = `sleep 6${process.pid}1`;
    const running = () => execFileSync('ps', ['-eo', 'args']).toString().split('\n').some((l) => l.trim() === marker);
    const held = await attach(d, { id: s.id, cmd: sh(`echo up; ${marker}`), stdin: true });
    await poll(async () => held.out.text === 'up\n' && running(), 20_000, 'the command to start');
    held.x.close();
    expect(await held.x.exit.catch((e: Error) => e.name)).toBe('AbortError');
    await poll(async () => !running(), 20_000, 'the hung-up command to end');
    await d.client.sessions.stop({ id: s.id, timeoutSec: 2 });
  });
});

describe('exec stream while berthd stops', () => {
  it('an open exec ends with DAEMON_UNREACHABLE and does not hold berthd up', async () => {
    const project = `exs-${process.pid}`;
    const { d } = await startWithProject({}, project);
    await using _ = d;
    await d.client.agents.define({ name: 'idle', command: sh('sleep 3600') });
    const s = await d.client.sessions.start({ project, agent: 'idle' });
    const { x, out } = await attach(d, { id: s.id, cmd: sh('echo up; sleep 600'), stdin: true });
    await poll(async () => out.text === 'up\n', 20_000, 'the command to start');
    expect(await d.stop('SIGTERM')).toBe(0);
    expect(await codeOf(x.exit)).toBe('DAEMON_UNREACHABLE');
  });
});
