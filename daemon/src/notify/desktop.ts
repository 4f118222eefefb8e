import { spawn as nodeSpawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { accessSync, constants, statSync } from 'node:fs';
import { delimiter, isAbsolute, join } from 'node:path';
import type { Notification } from '@berth/client-sdk/protocol';
import type { Logger } from '../log.js';

export interface DesktopNotifier {
  /** The program that shows them (`notify-send`, `osascript`). */
  readonly command: string;
  /** Shows `n`; returns at once and never throws. */
  notify(n: Notification): void;
}

export interface DesktopOptions {
  log: Logger;
  env?: NodeJS.ProcessEnv;
  platform?: NodeJS.Platform;
  spawn?: (command: string, args: string[], options: SpawnOptions) => ChildProcess;
  /** A notifier still running after this long is killed (default 10 s). */
  timeoutMs?: number;
  /** More notifiers running at once than this and the next notification is not shown (default 4). */
  maxRunning?: number;
}

const TITLE_MAX = 120;
const BODY_MAX = 400;

/** The executable `name` on `PATH`, as `command -v` finds it; null when there is none. */
export function findExecutable(name: string, path: string | undefined): string | null {
  for (const dir of (path ?? '').split(delimiter)) {
    if (!dir || !isAbsolute(dir)) continue;
    const file = join(dir, name);
    try {
      if (!statSync(file).isFile()) continue;
      accessSync(file, constants.X_OK);
      return file;
    } catch {
      // not here
    }
  }
  return null;
}

/**
 * Text chosen by an agent (a session name, a hook's message) made fit for one line of a
 * notification: control, bidi and invisible characters become spaces, runs of space one, and it is cut.
 */
export function plainText(text: string, max: number): string {
  const t = text
    .replace(/[\p{Cc}\p{Bidi_Control}\u2028\u2029\u200b\u2060\ufeff]/gu, ' ')
    .replace(/\s+/g, ' ')
    .trim();
  return t.length > max ? `${t.slice(0, max - 1)}…` : t;
}

const KIND_TEXT: Record<Notification['kind'], string> = {
  'waiting-input': 'waits for input',
  stuck: 'is stuck',
  exited: 'exited',
  failed: 'failed',
  budget: 'is over budget',
};

/** Title and body of the desktop notification for `n`, each one plain line. */
export function desktopText(n: Notification): { title: string; body: string } {
  const where = n.session.project ? ` (${n.session.project}${n.session.agent ? `/${n.session.agent}` : ''})` : '';
  return {
    title: plainText(`berth: ${n.session.name} ${KIND_TEXT[n.kind]}`, TITLE_MAX),
    body: plainText(`${n.message}${where}`, BODY_MAX),
  };
}

/**
 * The program and arguments that show `n` on `platform`. Everything is passed as an argument,
 * never through a shell or inside a script's text: osascript reads title and body from `argv`;
 * notify-send gets `--` before them and its body's markup characters as entities.
 */
export function desktopCommand(platform: 'linux' | 'darwin', command: string, n: Notification): { command: string; args: string[] } {
  const { title, body } = desktopText(n);
  if (platform === 'darwin') {
    return {
      command,
      args: ['-e', 'on run argv', '-e', 'display notification (item 2 of argv) with title (item 1 of argv)', '-e', 'end run', title, body],
    };
  }
  const markup = body.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
  const urgency = n.kind === 'waiting-input' ? 'normal' : 'critical';
  return { command, args: ['--app-name=berth', `--urgency=${urgency}`, '--', title, markup] };
}

/**
 * Desktop notifications where the host has them: `notify-send` on Linux with a desktop session
 * (a session bus or a display in berthd's environment: a system service has neither), `osascript`
 * on macOS. null otherwise. Looked up once.
 */
export function desktopNotifier(opts: DesktopOptions): DesktopNotifier | null {
  const env = opts.env ?? process.env;
  const platform = opts.platform ?? process.platform;
  let kind: 'linux' | 'darwin';
  let command: string | null;
  if (platform === 'darwin') {
    kind = 'darwin';
    command = findExecutable('osascript', env.PATH);
  } else if (platform === 'linux' || platform === 'freebsd' || platform === 'openbsd') {
    kind = 'linux';
    const desktop = env.DBUS_SESSION_BUS_ADDRESS || env.DISPLAY || env.WAYLAND_DISPLAY;
    command = desktop ? findExecutable('notify-send', env.PATH) : null;
  } else {
    return null;
  }
  if (!command) return null;

  const spawn = opts.spawn ?? nodeSpawn;
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const maxRunning = opts.maxRunning ?? 4;
  const log = opts.log;
  let running = 0;
  const name = command.slice(command.lastIndexOf('/') + 1);
  return {
    command: name,
    notify(n) {
      if (running >= maxRunning) {
        log.debug({ notificationId: n.id, running }, 'Desktop notification skipped: too many still showing');
        return;
      }
      try {
        const { args } = desktopCommand(kind, command, n);
        // Its own process group, no stdio: a notifier that hangs or prints cannot touch berthd.
        const child = spawn(command, args, { detached: true, stdio: 'ignore', env });
        running++;
        let finished = false;
        const done = () => {
          if (finished) return;
          finished = true;
          running--;
          clearTimeout(timer);
        };
        const timer = setTimeout(() => {
          child.kill('SIGKILL');
          done();
        }, timeoutMs);
        timer.unref();
        child.once('error', (err) => {
          log.debug({ err: err.message }, 'Desktop notification failed');
          done();
        });
        child.once('exit', done);
        child.unref();
      } catch (err) {
        log.debug({ err: (err as Error).message }, 'Desktop notification failed');
      }
    },
  };
}
