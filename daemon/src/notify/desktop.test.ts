import { EventEmitter } from 'node:events';
import type { ChildProcess } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import type { Notification } from '@berth/client-sdk/protocol';
import { desktopCommand, desktopNotifier, desktopText, findExecutable, plainText } from './desktop.js';

const log = pino({ level: 'silent' });
const dirs: string[] = [];
afterEach(() => dirs.splice(0).forEach((d) => rmSync(d, { recursive: true, force: true })));

/** A temp dir with an executable `name` in it that writes its arguments, NUL-separated, to `out`. */
function fakeProgram(name: string): { dir: string; out: string } {
  const dir = mkdtempSync(join(tmpdir(), 'bt-notify-'));
  dirs.push(dir);
  const out = join(dir, 'args');
  writeFileSync(join(dir, name), `#!/bin/sh\nfor a in "$@"; do printf '%s\\0' "$a"; done > '${out}'\n`);
  chmodSync(join(dir, name), 0o755);
  return { dir, out };
}

const note = (patch: Partial<Notification> = {}, name = 'fixer'): Notification => ({
  id: 'n1',
  kind: 'waiting-input',
  session: { id: 's1', name, project: 'web', agent: 'claude' },
  message: 'waiting for input: Claude needs your permission to use Bash',
  ts: '2026-01-02T03:04:05.000Z',
  ...patch,
});

describe('desktop text', () => {
  it('controls, bidi and invisible characters become spaces; long text is cut', () => {
    expect(plainText('a\x1b]52;c;ZXZpbA==\x07b\nc\u202ed\u200be\r\n', 100)).toBe('a ]52;c;ZXZpbA== b c d e');
    expect(plainText('x'.repeat(50), 10)).toBe(`${'x'.repeat(9)}…`);
  });

  it('title names the session and what happened; the body the message and where', () => {
    expect(desktopText(note())).toEqual({
      title: 'berth: fixer waits for input',
      body: 'waiting for input: Claude needs your permission to use Bash (web/claude)',
    });
  });

  it('notify-send: the body\'s markup is escaped and `--` ends the options', () => {
    const n = note({ kind: 'failed', message: 'failed: <b>x</b> & <a href="file:///">y</a>' }, '-rf\x1b[2J');
    const { args } = desktopCommand('linux', '/usr/bin/notify-send', n);
    expect(args).toEqual([
      '--app-name=berth',
      '--urgency=critical',
      '--',
      'berth: -rf [2J failed',
      'failed: &lt;b&gt;x&lt;/b&gt; &amp; &lt;a href="file:///"&gt;y&lt;/a&gt; (web/claude)',
    ]);
  });

  it('osascript reads title and body from argv, never from the script text', () => {
    const n = note({ message: '" & do shell script "touch /tmp/pwned" & "' });
    const { args } = desktopCommand('darwin', '/usr/bin/osascript', n);
    const script = args.filter((_, i) => args[i - 1] === '-e');
    expect(script.join('\n')).not.toContain('pwned');
    expect(args.slice(-2)).toEqual(['berth: fixer waits for input', '" & do shell script "touch /tmp/pwned" & " (web/claude)']);
  });
});

describe('desktopNotifier', () => {
  it('is absent where the host has none: no program, no desktop session, another platform', () => {
    const { dir } = fakeProgram('notify-send');
    expect(desktopNotifier({ log, platform: 'linux', env: { PATH: '/nonexistent', DISPLAY: ':0' } })).toBeNull();
    expect(desktopNotifier({ log, platform: 'linux', env: { PATH: dir } })).toBeNull();
    expect(desktopNotifier({ log, platform: 'win32', env: { PATH: dir, DISPLAY: ':0' } })).toBeNull();
    expect(desktopNotifier({ log, platform: 'linux', env: { PATH: dir, DBUS_SESSION_BUS_ADDRESS: 'unix:path=/x' } })?.command).toBe('notify-send');
  });

  it('findExecutable skips relative PATH entries and files that do not execute', () => {
    const { dir } = fakeProgram('notify-send');
    writeFileSync(join(dir, 'plain'), '');
    expect(findExecutable('notify-send', `.:relative:${dir}`)).toBe(join(dir, 'notify-send'));
    expect(findExecutable('plain', dir)).toBeNull();
    expect(findExecutable('notify-send', undefined)).toBeNull();
  });

  it('runs the real program with the arguments intact', async () => {
    const { dir, out } = fakeProgram('notify-send');
    const d = desktopNotifier({ log, platform: 'linux', env: { PATH: dir, DISPLAY: ':0' } })!;
    d.notify(note({}, 'name with $(touch x) and `y`'));
    const deadline = Date.now() + 10_000;
    while (!existsSync(out) || !readFileSync(out, 'utf8').includes('(web/claude)')) {
      if (Date.now() > deadline) throw new Error('the fake notify-send never ran');
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(readFileSync(out, 'utf8').split('\0').slice(3, 5)).toEqual([
      'berth: name with $(touch x) and `y` waits for input',
      'waiting for input: Claude needs your permission to use Bash (web/claude)',
    ]);
  });

  it('shows at most maxRunning at once, kills one that hangs, and never throws', () => {
    const { dir } = fakeProgram('notify-send');
    const children: (EventEmitter & { killed?: string })[] = [];
    const spawn = () => {
      const c = Object.assign(new EventEmitter(), { unref() {}, kill(sig: string) { c.killed = sig; } }) as EventEmitter & { killed?: string; unref(): void; kill(s: string): void };
      children.push(c);
      return c as unknown as ChildProcess;
    };
    const d = desktopNotifier({ log, platform: 'linux', env: { PATH: dir, DISPLAY: ':0' }, spawn, maxRunning: 2 })!;
    d.notify(note());
    d.notify(note());
    d.notify(note());
    expect(children).toHaveLength(2);
    children[0]!.emit('exit', 0);
    d.notify(note());
    expect(children).toHaveLength(3);
    children[1]!.emit('error', new Error('ENOENT'));
    children[2]!.emit('exit', 1);
    const throwing = desktopNotifier({
      log,
      platform: 'linux',
      env: { PATH: dir, DISPLAY: ':0' },
      spawn: () => {
        throw new Error('EAGAIN');
      },
    })!;
    expect(() => throwing.notify(note())).not.toThrow();
  });

  it('a notifier that hangs is killed after the timeout', async () => {
    const { dir } = fakeProgram('notify-send');
    let killed: string | null = null;
    const spawn = () => Object.assign(new EventEmitter(), { unref() {}, kill: (sig: string) => void (killed = sig) }) as unknown as ChildProcess;
    const d = desktopNotifier({ log, platform: 'linux', env: { PATH: dir, DISPLAY: ':0' }, spawn, timeoutMs: 10 })!;
    d.notify(note());
    await new Promise((r) => setTimeout(r, 100));
    expect(killed).toBe('SIGKILL');
  });
});
