import { execFileSync } from 'node:child_process';
import type { Writable } from 'node:stream';

/** Whether the CLI's stdin is a terminal (what `berth exec -t` needs). */
export function stdinIsTerminal(): boolean {
  return process.stdin.isTTY === true;
}

const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

/**
 * The local side of `berth exec` while it is attached: the terminal in raw mode (`raw`: keys go to
 * the command as typed, Ctrl-C included), stdin piped to `stdin`, SIGWINCH to `onResize`, and
 * SIGINT/SIGTERM/SIGHUP to `onSignal` instead of ending the CLI with the terminal left raw. The
 * returned function undoes all of it; the terminal mode is also restored if the process exits first.
 */
export function attachTerminal(opts: {
  raw: boolean;
  stdin: Writable | null;
  onResize: (() => void) | null;
  onSignal: (signal: (typeof SIGNALS)[number]) => void;
}): () => void {
  const input = process.stdin;
  let raw = false;
  let saved: string | null = null;
  const restore = () => {
    if (raw && input.isTTY) input.setRawMode(false);
    if (saved) stty([saved]);
    raw = false;
    saved = null;
  };
  if (opts.raw && input.isTTY) {
    saved = stty(['-g'])?.trim() || null;
    input.setRawMode(true);
    // node's raw mode keeps output processing (a "\n" written becomes "\r\n"): a full-screen program
    // in the session moves the cursor with a bare "\n" and gets a stray carriage return with it. The
    // session's own terminal already did its output processing, so ours does none (as docker's raw mode).
    stty(['-opost']);
    raw = true;
  }
  process.once('exit', restore);
  if (opts.stdin) input.pipe(opts.stdin);
  const winch = () => opts.onResize?.();
  if (opts.onResize) process.on('SIGWINCH', winch);
  const handlers = SIGNALS.map((sig) => {
    const h = () => opts.onSignal(sig);
    process.on(sig, h);
    return [sig, h] as const;
  });
  let released = false;
  return () => {
    if (released) return;
    released = true;
    restore();
    process.off('exit', restore);
    if (opts.stdin) {
      input.unpipe(opts.stdin);
      // Nothing more is read: a terminal or pipe left open on stdin must not keep the CLI alive.
      input.destroy();
    }
    if (opts.onResize) process.off('SIGWINCH', winch);
    for (const [sig, h] of handlers) process.off(sig, h);
  };
}

/** stty on the CLI's stdin (where raw mode lives); what it printed, or null when it failed. */
function stty(args: string[]): string | null {
  try {
    return execFileSync('stty', args, { stdio: ['inherit', 'pipe', 'ignore'], encoding: 'utf8', timeout: 5000 });
  } catch {
    return null;
  }
}
