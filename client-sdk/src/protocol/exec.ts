/**
 * The `sessions.exec` stream: a command in a running session with its stdin, its output as it
 * comes, a terminal when asked (`tty`), resizes and its exit code.
 *
 * The client asks with `GET /sessions/:id/exec?QUERY` and the headers `Connection: Upgrade`,
 * `Upgrade: berth-exec` (the way the Docker API hijacks a connection for exec). A refusal (unknown
 * session, not running, bad params, no upgrade asked for) is an ordinary answer: `{error: WireError}`
 * with the status the registry gives its code. Otherwise berthd answers `101 Switching Protocols`
 * and from then on both sides send frames on the connection:
 *
 *   type (1 byte) | length (uint32, big-endian) | payload (length bytes, at most MAX_EXEC_FRAME)
 *
 * client → berthd: STDIN (bytes), STDIN_EOF (empty), RESIZE (JSON {cols, rows})
 * berthd → client: STDOUT, STDERR (bytes, as the command writes them; with `tty` everything is
 *                  STDOUT, raw terminal output), then exactly one of EXIT (JSON {exitCode}) or
 *                  ERROR (JSON {error: WireError}), after which berthd closes the connection.
 *
 * A client that closes its end of the connection (a half-close included: stdin has its own frame)
 * is gone: the command's stdin ends and it is hung up, SIGHUP to it and the processes it started,
 * as a terminal closing would (unlike `docker exec`, which leaves it running). The same happens
 * past `timeoutSec`, with EXEC_TIMEOUT; there is no deadline unless it is asked for.
 */
export interface ExecStreamParams {
  /** Session id, id prefix or name. */
  id: string;
  cmd: string[];
  /** A terminal for the command: raw output on STDOUT only, RESIZE applies. */
  tty?: boolean;
  /** Whether the command gets the client's STDIN frames (else its stdin is empty). */
  stdin?: boolean;
  env?: Record<string, string>;
  /** Working directory inside the session (default: the session's). */
  workdir?: string;
  /** The terminal's size at start, with `tty`. */
  cols?: number;
  rows?: number;
  /** Give up (EXEC_TIMEOUT) after this many seconds; none when not given. */
  timeoutSec?: number;
}

export const EXEC_UPGRADE = 'berth-exec';

export const ExecFrame = {
  STDIN: 0,
  STDOUT: 1,
  STDERR: 2,
  STDIN_EOF: 3,
  RESIZE: 4,
  EXIT: 5,
  ERROR: 6,
} as const;
export type ExecFrameType = (typeof ExecFrame)[keyof typeof ExecFrame];

/** The largest payload a frame may carry; a peer sending more breaks the protocol (the connection ends). */
export const MAX_EXEC_FRAME = 1024 * 1024;

const HEADER = 5;

/** One frame as bytes. */
export function encodeExecFrame(type: ExecFrameType, payload: Uint8Array | string | object = new Uint8Array(0)): Uint8Array {
  const body =
    payload instanceof Uint8Array ? payload : new TextEncoder().encode(typeof payload === 'string' ? payload : JSON.stringify(payload));
  const out = new Uint8Array(HEADER + body.length);
  const view = new DataView(out.buffer);
  view.setUint8(0, type);
  view.setUint32(1, body.length);
  out.set(body, HEADER);
  return out;
}

/** A frame's JSON payload (RESIZE, EXIT, ERROR). */
export function execFrameJson<T>(payload: Uint8Array): T {
  return JSON.parse(new TextDecoder().decode(payload)) as T;
}

/**
 * Splits a byte stream into frames: feed chunks as they come, get whole frames back. Throws on a
 * frame over MAX_EXEC_FRAME or an unknown type (the peer does not speak this protocol).
 */
export class ExecFrameReader {
  private buf: Uint8Array = new Uint8Array(0);

  push(chunk: Uint8Array): { type: ExecFrameType; payload: Uint8Array }[] {
    if (this.buf.length) {
      const joined = new Uint8Array(this.buf.length + chunk.length);
      joined.set(this.buf);
      joined.set(chunk, this.buf.length);
      this.buf = joined;
    } else this.buf = chunk;
    const frames: { type: ExecFrameType; payload: Uint8Array }[] = [];
    while (this.buf.length >= HEADER) {
      const view = new DataView(this.buf.buffer, this.buf.byteOffset, this.buf.byteLength);
      const type = view.getUint8(0);
      const size = view.getUint32(1);
      if (type > ExecFrame.ERROR) throw new Error(`unknown exec frame type ${type}`);
      if (size > MAX_EXEC_FRAME) throw new Error(`exec frame of ${size} bytes is over the ${MAX_EXEC_FRAME}-byte limit`);
      if (this.buf.length < HEADER + size) break;
      frames.push({ type: type as ExecFrameType, payload: this.buf.subarray(HEADER, HEADER + size) });
      this.buf = this.buf.subarray(HEADER + size);
    }
    // What is kept is copied, so a caller's chunk is not pinned (and not shared) by a partial frame.
    if (this.buf.length && this.buf.byteOffset !== 0) this.buf = this.buf.slice();
    return frames;
  }
}

/** The query string of a `sessions.exec` stream request (everything but `id`, which is in the path). */
export function execQuery(p: ExecStreamParams): string {
  const q = new URLSearchParams();
  for (const c of p.cmd) q.append('cmd', c);
  if (p.tty) q.set('tty', '1');
  if (p.stdin) q.set('stdin', '1');
  for (const [k, v] of Object.entries(p.env ?? {})) q.append('env', `${k}=${v}`);
  if (p.workdir !== undefined) q.set('workdir', p.workdir);
  if (p.cols !== undefined) q.set('cols', String(p.cols));
  if (p.rows !== undefined) q.set('rows', String(p.rows));
  if (p.timeoutSec !== undefined) q.set('timeoutSec', String(p.timeoutSec));
  return q.toString();
}

/**
 * The params back from the path's `id` and the query (repeated keys as arrays, the way a query
 * parser gives them): shapes only; berthd's schema checks the values.
 */
export function fromExecQuery(id: string, query: Record<string, string | string[] | undefined>): Record<string, unknown> {
  const all = (k: string) => {
    const v = query[k];
    return v === undefined ? [] : Array.isArray(v) ? v : [v];
  };
  const one = (k: string) => {
    const v = all(k);
    return v.length ? v[v.length - 1] : undefined;
  };
  const flag = (k: string) => (one(k) === undefined ? undefined : one(k) === '1' || one(k) === 'true' ? true : one(k) === '0' || one(k) === 'false' ? false : one(k));
  const num = (k: string) => {
    const v = one(k);
    return v === undefined ? undefined : /^\d{1,9}$/.test(v) ? Number(v) : v;
  };
  const out: Record<string, unknown> = { id, cmd: all('cmd') };
  const set = (k: string, v: unknown) => {
    if (v !== undefined) out[k] = v;
  };
  set('tty', flag('tty'));
  set('stdin', flag('stdin'));
  const env = all('env');
  if (env.length) {
    // fromEntries makes own properties, so a name like __proto__ is a name, not the prototype; a
    // pair without "=" keeps its whole text as the name, which the schema then refuses.
    out.env = Object.fromEntries(env.map((pair) => {
      const i = pair.indexOf('=');
      return i < 0 ? [pair, ''] : [pair.slice(0, i), pair.slice(i + 1)];
    }));
  }
  set('workdir', one('workdir'));
  set('cols', num('cols'));
  set('rows', num('rows'));
  set('timeoutSec', num('timeoutSec'));
  return out;
}
