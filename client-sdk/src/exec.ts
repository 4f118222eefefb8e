import { request } from 'node:http';
import type { Duplex } from 'node:stream';
import { PassThrough, Writable, type Readable } from 'node:stream';
import { readAll, refusal } from './events.js';
import { daemonStarting, NOT_LISTENING, transportError } from './socket.js';
import {
  BerthError,
  ExecFrame,
  ExecFrameReader,
  MAX_EXEC_FRAME,
  encodeExecFrame,
  execFrameJson,
  fromWireError,
  streamRoutes,
  EXEC_UPGRADE,
  execQuery,
  type ExecStreamParams,
  type WireError,
} from './protocol/index.js';

/**
 * A command running in a session, attached (BerthClient.sessions.execStream). Its output arrives on
 * `stdout` and `stderr` as it is written (with `tty`, all of it on `stdout`, raw); what is written
 * to `stdin` goes to it when it was opened with `stdin: true`, and ending `stdin` is its EOF.
 */
export interface ExecStream {
  readonly stdin: Writable;
  readonly stdout: Readable;
  readonly stderr: Readable;
  /** The terminal's new size (with `tty`); ignored otherwise. */
  resize(cols: number, rows: number): void;
  /**
   * The command's exit code, once its output has been delivered. Rejects with the stream's error
   * (EXEC_TIMEOUT, DAEMON_UNREACHABLE when berthd went away, ...), or with an AbortError after close().
   */
  readonly exit: Promise<number>;
  /** Detaches: the command's stdin ends and a terminal hangs up (see the protocol's exec.ts). */
  close(): void;
}

/** Speaks the exec frames on a connection berthd has upgraded (`head`: bytes that came with the 101). */
export function execStreamOn(socket: Duplex, head: Buffer): ExecStream {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let settle!: { resolve: (code: number) => void; reject: (err: Error) => void };
  const exit = new Promise<number>((resolve, reject) => (settle = { resolve, reject }));
  // Whoever only reads the output need not also await exit for its failure to count as handled.
  exit.catch(() => {});
  let result: { code: number } | { error: Error } | null = null;
  const end = () => {
    stdout.end();
    stderr.end();
    if (!result) result = { error: new BerthError('DAEMON_UNREACHABLE', 'berthd closed the exec stream before the command ended') };
    if ('code' in result) settle.resolve(result.code);
    else settle.reject(result.error);
  };

  const write = (frame: Uint8Array, done: (err?: Error | null) => void) => {
    if (socket.destroyed || !socket.writable) return done();
    if (socket.write(frame)) return done();
    const go = () => {
      socket.off('drain', go);
      socket.off('close', go);
      done();
    };
    socket.once('drain', go);
    socket.once('close', go);
  };
  const stdin = new Writable({
    write(chunk: Buffer, _enc, done) {
      const frames: Uint8Array[] = [];
      for (let i = 0; i < chunk.length; i += MAX_EXEC_FRAME) frames.push(encodeExecFrame(ExecFrame.STDIN, chunk.subarray(i, i + MAX_EXEC_FRAME)));
      const next = (k: number) => (k === frames.length ? done() : write(frames[k]!, () => next(k + 1)));
      next(0);
    },
    final(done) {
      write(encodeExecFrame(ExecFrame.STDIN_EOF), done);
    },
  });
  // A write after the command ended is dropped, not an error.
  stdin.on('error', () => {});

  const reader = new ExecFrameReader();
  const onData = (chunk: Buffer) => {
    let frames;
    try {
      frames = reader.push(chunk);
    } catch (err) {
      result ??= { error: new BerthError('INTERNAL_ERROR', `berthd sent what is not an exec frame: ${(err as Error).message}`) };
      socket.destroy();
      return;
    }
    for (const f of frames) {
      const bytes = Buffer.from(f.payload.buffer, f.payload.byteOffset, f.payload.byteLength);
      if (f.type === ExecFrame.STDOUT || f.type === ExecFrame.STDERR) {
        const out = f.type === ExecFrame.STDOUT ? stdout : stderr;
        // A reader that is behind holds the command back (berthd stops reading it in turn).
        if (!out.write(bytes)) {
          socket.pause();
          out.once('drain', () => socket.resume());
        }
      } else if (f.type === ExecFrame.EXIT) {
        result ??= { code: execFrameJson<{ exitCode: number }>(bytes).exitCode };
      } else if (f.type === ExecFrame.ERROR) {
        result ??= { error: fromWireError(execFrameJson<{ error?: WireError }>(bytes).error, 'the exec stream failed') };
      }
    }
  };
  socket.on('data', onData);
  socket.on('error', () => {});
  socket.once('close', end);
  if (head.length) onData(head);

  return {
    stdin,
    stdout,
    stderr,
    exit,
    resize(cols, rows) {
      if (socket.writable) socket.write(encodeExecFrame(ExecFrame.RESIZE, { cols, rows }));
    },
    close() {
      if (!result) {
        const e = new Error('the exec stream was closed before the command ended');
        e.name = 'AbortError';
        result = { error: e };
      }
      socket.destroy();
    },
  };
}

/** The longest request path of an exec stream (its command and environment are in the query). */
const MAX_EXEC_PATH_BYTES = 12 * 1024;

/**
 * Opens a `sessions.exec` stream on berthd's socket: resolves once berthd upgraded the connection
 * (the command runs), rejects with the refusal's code. While berthd is starting (its pid file names
 * it) the connect is retried for up to `startWaitMs`.
 */
export async function openExecStream(socketPath: string, startWaitMs: number, params: ExecStreamParams): Promise<ExecStream> {
  const path = `${streamRoutes['sessions.exec'].path.replace(':id', encodeURIComponent(params.id))}?${execQuery(params)}`;
  // node's HTTP server takes request heads up to 16 KiB; past that berthd would answer 431 with no body.
  if (Buffer.byteLength(path) > MAX_EXEC_PATH_BYTES) {
    throw new BerthError('INVALID_PARAMS', `the command and environment of an exec stream take at most ${MAX_EXEC_PATH_BYTES} bytes (URL-encoded); send a long script through stdin instead`, {
      details: { bytes: Buffer.byteLength(path), max: MAX_EXEC_PATH_BYTES },
    });
  }
  const giveUpAt = Date.now() + startWaitMs;
  for (let pause = 25; ; pause = Math.min(pause * 2, 200)) {
    try {
      return await new Promise<ExecStream>((resolve, reject) => {
        const req = request({ agent: false, socketPath, path, method: 'GET', headers: { connection: 'Upgrade', upgrade: EXEC_UPGRADE } });
        req.on('upgrade', (_res, socket, head) => resolve(execStreamOn(socket, head)));
        req.on('response', (res) => {
          readAll(res).then((text) => reject(refusal(res.statusCode ?? 0, text)), reject);
        });
        req.on('error', reject);
        req.end();
      });
    } catch (err) {
      if (err instanceof BerthError) throw err;
      const code = (err as NodeJS.ErrnoException).code;
      if (!(code && NOT_LISTENING.has(code) && Date.now() < giveUpAt && daemonStarting(socketPath))) throw transportError(socketPath, err as Error);
      await new Promise((r) => setTimeout(r, pause));
    }
  }
}
