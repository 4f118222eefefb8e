import { BerthError } from '../protocol/index.js';

/*
 * Terminal safety. Much of what berth prints was chosen by an agent: commit subjects, author names,
 * file names, diff text, log lines, exec output, and error messages that quote any of these. A
 * terminal obeys what it is sent, so raw text could write the user's clipboard (OSC 52), retitle the
 * window, erase or overwrite lines (CSI, CR) to hide a dirty file, or reorder a name (bidi).
 *
 * So every byte for a human goes through one writer, `Out`, whose `print`/`printErr` escape what
 * they are given with `escapeControls`; the raw sinks are private to it, and `output.test.ts`
 * fails if another CLI file touches process.stdout/stderr or console. `--json` output stays exact
 * (JSON.parse gives back the original strings) and is terminal-safe too: `jsonText` writes the
 * characters JSON.stringify leaves raw as \u escapes. The only escape sequences that reach the
 * terminal are berth's own, from the progress bar drawn by `Out.progressBar`, whose fields are
 * escaped like any other text, and those of a command the user gave a terminal of its own
 * (`berth exec -t`, through `Out.raw`): there the terminal is the session's, as with `docker exec -t`,
 * and what it shows is what the command draws.
 */

/**
 * What is escaped, and why:
 * - C0 controls (U+0000–U+001F): ESC starts CSI/OSC sequences, CR and BS overwrite, BEL, ...
 *   (`\n` and `\t` are kept where the layout needs them: see `multiline`)
 * - DEL (U+007F) and C1 controls (U+0080–U+009F): U+009B is a one-byte CSI, U+009D a one-byte OSC
 * - bidi controls (U+061C, U+200E, U+200F, U+202A–U+202E, U+2066–U+2069): they reorder what follows,
 *   so `txt.exe` can read as `exe.txt`
 * - line and paragraph separators (U+2028, U+2029) and the invisible U+200B, U+2060, U+FEFF, which
 *   hide inside a name. ZWJ/ZWNJ are kept: emoji and several scripts need them.
 */
const CONTROLS = /[\p{Cc}\p{Bidi_Control}\u2028\u2029\u200b\u2060\ufeff]/gu;
const CONTROLS_BUT_LAYOUT = /[\x00-\x08\x0b-\x1f\x7f-\x9f\p{Bidi_Control}\u2028\u2029\u200b\u2060\ufeff]/gu;

/**
 * Makes text safe to print: each character above is shown visibly, in JavaScript string-escape
 * notation: `\n`, `\t`, `\r` for those three, `\xHH` for other code points up to U+00FF (ESC is
 * `\x1b`, CSI `\x9b`), `\uHHHH` above (`\u202e`). A backslash is not itself escaped, so a literal
 * `\x1b` in a name prints the same as an escaped ESC (`--json` tells them apart); that keeps the
 * function idempotent, so text escaped once may safely pass through a printer that escapes again.
 *
 * `multiline` keeps `\n` and `\t` for text whose layout is lines (diff, logs, command output, the
 * human renderings); a single value placed in a line (a cell, a subject, a path) leaves it off, so a
 * name with a newline cannot forge a line of its own.
 */
export function escapeControls(text: string, opts: { multiline?: boolean } = {}): string {
  // CONTROLS less \n and \t, so the lines of long text cost no call each.
  return text.replace(opts.multiline ? CONTROLS_BUT_LAYOUT : CONTROLS, (c) => {
    if (c === '\n') return '\\n';
    if (c === '\t') return '\\t';
    if (c === '\r') return '\\r';
    const cp = c.codePointAt(0)!;
    return cp <= 0xff ? `\\x${cp.toString(16).padStart(2, '0')}` : `\\u${cp.toString(16).padStart(4, '0')}`;
  });
}

/**
 * A line of human output whose interpolated values cannot break it: each `${value}` is escaped
 * whole, newlines and tabs included; the literal parts are berth's own.
 */
export function line(strings: TemplateStringsArray, ...values: unknown[]): string {
  return strings.reduce((acc, s, i) => acc + (i === 0 ? '' : escapeControls(String(values[i - 1]))) + s, '');
}

/** `-q` output: one id or name a line, each escaped (an empty list prints nothing). */
export function ids(values: string[]): string {
  return values.map((v) => `${escapeControls(v)}\n`).join('');
}

/** Characters JSON.stringify leaves raw that a terminal would act on (it escapes C0 itself). */
const JSON_RAW_CONTROLS = /[\u007f-\u009f\p{Bidi_Control}\u2028\u2029\u200b\u2060\ufeff]/gu;

/** JSON for machines: exact once parsed, and with no character a terminal acts on. */
export function jsonText(value: unknown, pretty = false): string {
  return JSON.stringify(value, null, pretty ? 2 : undefined).replace(JSON_RAW_CONTROLS, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

export interface Sinks {
  stdout?: (s: string) => void;
  stderr?: (s: string) => void;
}

/** A progress bar berth draws itself; the fields given to it are escaped. */
export interface ProgressBar {
  start(total: number, fields: Record<string, string>): void;
  update(value: number, fields: Record<string, string>): void;
  stop(): void;
}

/** The CLI's only way to write: human text escaped, JSON exact. */
export class Out {
  /** --json: JSON on stdout, nothing else. */
  json = false;
  readonly #stdout: (s: string) => void;
  readonly #stderr: (s: string) => void;
  /** stderr when it is the process's own and a terminal: where a progress bar may draw. */
  readonly #tty: NodeJS.WriteStream | null;
  /** The process's own stdout as bytes; null when the output goes to sinks (tests). */
  readonly #rawStdout: ((b: Uint8Array) => void) | null;

  constructor(sinks: Sinks = {}) {
    this.#rawStdout = sinks.stdout === undefined ? (b) => void process.stdout.write(b) : null;
    this.#stdout = sinks.stdout ?? ((s) => void process.stdout.write(s));
    this.#stderr = sinks.stderr ?? ((s) => void process.stderr.write(s));
    this.#tty = sinks.stderr === undefined && process.stderr.isTTY === true ? process.stderr : null;
  }

  /** Human text on stdout; control characters escaped, lines and tabs kept. */
  print(text: string): void {
    this.#stdout(escapeControls(text, { multiline: true }));
  }

  /**
   * Resolves once the process's stdout takes more (at once for sinks, or when it is gone): long
   * outputs wait on it instead of buffering without bound. Calls `onGone` once if stdout's reader
   * went away (EPIPE: `| head`), instead of the error killing the process.
   */
  async stdoutReady(onGone?: () => void): Promise<void> {
    if (this.#rawStdout === null) return;
    const s = process.stdout;
    if (onGone && !this.#goneHooked) {
      this.#goneHooked = true;
      s.on('error', (err: NodeJS.ErrnoException) => {
        if (err.code === 'EPIPE' || err.code === 'ERR_STREAM_DESTROYED') onGone();
        else throw err;
      });
    }
    if (!s.writableNeedDrain || s.destroyed) return;
    await new Promise<void>((r) => {
      const done = () => {
        s.off('drain', done).off('close', done).off('error', done);
        r();
      };
      s.on('drain', done).on('close', done).on('error', done);
    });
  }

  #goneHooked = false;

  /** Human text on stderr, escaped like `print`. */
  printErr(text: string): void {
    this.#stderr(escapeControls(text, { multiline: true }));
  }

  /**
   * Bytes as they are, on stdout: only for the output of `berth exec -t`, whose command was given
   * the user's terminal and draws on it (see the top of this file).
   */
  raw(bytes: Uint8Array): void {
    if (this.#rawStdout) this.#rawStdout(bytes);
    else this.#stdout(Buffer.from(bytes).toString('utf8'));
  }

  /** The size of the terminal on stdout (else stderr), or null when neither is one. */
  terminalSize(): { cols: number; rows: number } | null {
    if (this.#rawStdout === null) return null;
    for (const s of [process.stdout, process.stderr]) if (s.isTTY && s.columns && s.rows) return { cols: s.columns, rows: s.rows };
    return null;
  }

  /** One JSON value: a pretty document, or a single NDJSON line. */
  printJson(value: unknown, opts: { pretty?: boolean; stderr?: boolean } = {}): void {
    (opts.stderr ? this.#stderr : this.#stdout)(`${jsonText(value, opts.pretty)}\n`);
  }

  /** A progress bar on stderr when that is a terminal and the output is for humans; else null. */
  async progressBar(format: string): Promise<ProgressBar | null> {
    const stream = this.#tty;
    if (this.json || !stream) return null;
    const { SingleBar, Presets } = await import('cli-progress');
    const safe = (fields: Record<string, string>) => Object.fromEntries(Object.entries(fields).map(([k, v]) => [k, escapeControls(v)]));
    let bar: InstanceType<typeof SingleBar> | null = null;
    return {
      start: (total, fields) => {
        bar?.stop();
        bar = new SingleBar({ format, hideCursor: true, stream }, Presets.shades_classic);
        bar.start(total, 0, safe(fields));
      },
      update: (value, fields) => bar?.update(value, safe(fields)),
      stop: () => {
        bar?.stop();
        bar = null;
      },
    };
  }
}

/**
 * An argv as a POSIX shell would take it back: words of safe characters as they are, others in
 * single quotes (`sh -c 'set -e; make'`). For showing a command, never for running one.
 */
export function shellQuote(argv: readonly string[]): string {
  return argv.map((a) => (/^[A-Za-z0-9_@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`)).join(' ');
}

/** A table cell cut to `max` characters, the cut marked with `…` (docker's --no-trunc turns this off). */
export function cut(text: string, max: number, noTrunc = false): string {
  return noTrunc || [...text].length <= max ? text : `${[...text].slice(0, max - 1).join('')}…`;
}

/** Plain aligned columns for humans; each cell is escaped to one line before it is measured. */
export function table(headers: string[], rows: string[][]): string {
  const cells = rows.map((r) => r.map((c) => escapeControls(c ?? '')));
  const widths = headers.map((h, i) => Math.max(h.length, ...cells.map((r) => (r[i] ?? '').length)));
  const row = (cs: string[]) =>
    cs
      .map((c, i) => (i === cs.length - 1 ? c : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [row(headers), ...cells.map(row)].join('\n') + '\n';
}

export function ago(iso: string, now = Date.now()): string {
  const s = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ago`;
  return `${Math.floor(s / 86400)}d ago`;
}

/** `in 9s` for a time ahead, `now` for one passed. */
export function until(iso: string, now = Date.now()): string {
  const s = Math.round((Date.parse(iso) - now) / 1000);
  return s <= 0 ? 'now' : `in ${duration(s)}`;
}

export function duration(sec: number): string {
  const d = Math.floor(sec / 86400);
  const h = Math.floor((sec % 86400) / 3600);
  const m = Math.floor((sec % 3600) / 60);
  const s = sec % 60;
  return d ? `${d}d${h}h` : h ? `${h}h${m}m` : m ? `${m}m${s}s` : `${s}s`;
}

/** Prints a result: JSON on stdout with --json, else the human rendering. */
export function emit(out: Out, value: unknown, human: () => string): void {
  if (out.json) out.printJson(value, { pretty: true });
  else out.print(human());
}

/**
 * `error[CODE]: message` and `  hint: ...`. A message of several lines (git's stderr) continues
 * under `  | `, so no line of it, whatever names it quotes, can pass for berth's own hint.
 */
function errorText(head: string, message: string, hint?: string): string {
  const [first = '', ...rest] = message.split('\n');
  return [line`${head}: ${first}`, ...rest.map((l) => line`  | ${l}`), ...(hint ? [line`  hint: ${hint}`] : [])].join('\n') + '\n';
}

/** Prints an error with its code and hint; returns the exit code. */
export function reportError(out: Out, err: unknown): number {
  if (err instanceof BerthError) {
    if (out.json) out.printJson({ error: { code: err.code, message: err.message, hint: err.hint, details: err.details } }, { stderr: true });
    else out.printErr(errorText(`error[${err.code}]`, err.message, err.hint));
    return 1;
  }
  const message = (err as Error)?.message ?? String(err);
  if (out.json) out.printJson({ error: { code: 'INTERNAL_ERROR', message } }, { stderr: true });
  else out.printErr(errorText('error', message));
  return 1;
}
