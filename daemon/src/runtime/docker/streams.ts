import { randomBytes } from 'node:crypto';
import type { Duplex, Readable } from 'node:stream';
import type Docker from 'dockerode';
import { BerthError, type LogLine } from '@berth/client-sdk/protocol';
import type { ExecOutput, ExecRequest, ExecSession, RuntimeEvent } from '../port.js';
import { LABELS, labelFilter } from '../labels.js';
import { Demuxer, FrameSplitter, LogDemuxer, toEngineSince } from './demux.js';
import { engineMessage, status, wrapTransport } from './errors.js';

/** The engine's streamed JSON messages (events, build output), one per line. */
export async function* jsonLines<T>(stream: Readable): AsyncGenerator<T> {
  let pending = '';
  for await (const chunk of stream) {
    pending += (chunk as Buffer).toString('utf8');
    let nl: number;
    while ((nl = pending.indexOf('\n')) >= 0) {
      const line = pending.slice(0, nl).trim();
      pending = pending.slice(nl + 1);
      if (line) yield JSON.parse(line) as T;
    }
  }
  if (pending.trim()) yield JSON.parse(pending) as T;
}


/** The environment variable that marks the processes of one attached exec (execStream). */
const EXEC_MARK = 'BERTH_EXEC';
/** SIGHUP to each process whose environment holds the line $1 exactly. */
const HANGUP_SCRIPT = 'for d in /proc/[0-9]*; do if tr "\\000" "\\n" < "$d/environ" 2>/dev/null | grep -qxF -- "$1"; then kill -HUP "${d#/proc/}" 2>/dev/null; fi; done; true';

/** What streams out of the engine: its events, a container's logs, an exec's output. */
export class DockerStreams {
  constructor(
    private readonly docker: Docker,
    /** A client without a request timeout: these streams live as long as they need. */
    private readonly streams: Docker,
    private readonly host: string,
  ) {}

  async events(labels: Record<string, string>, sinceNano: bigint | null, signal: AbortSignal): Promise<AsyncIterable<RuntimeEvent>> {
    const since = sinceNano === null ? undefined : `${sinceNano / 1_000_000_000n}.${String(sinceNano % 1_000_000_000n).padStart(9, '0')}`;
    let stream: Readable;
    try {
      stream = (await this.streams.getEvents({
        ...(since ? { since } : {}),
        filters: { type: ['container'], label: labelFilter(labels) },
        abortSignal: signal,
      } as Docker.GetEventsOptions)) as unknown as Readable;
    } catch (err) {
      wrapTransport(err, this.host);
    }
    const host = this.host;
    return (async function* () {
      const onAbort = () => stream.destroy();
      signal.addEventListener('abort', onAbort, { once: true });
      try {
        for await (const e of jsonLines<{ id?: string; Action?: string; timeNano?: number; Actor?: { ID?: string; Attributes?: Record<string, string> } }>(stream)) {
          yield {
            containerId: e.Actor?.ID ?? e.id ?? '',
            sessionId: e.Actor?.Attributes?.[LABELS.session] ?? null,
            action: e.Action ?? '',
            timeNano: BigInt(e.timeNano ?? 0),
          };
        }
        if (!signal.aborted) throw new BerthError('ENGINE_UNAVAILABLE', `event stream from ${host} ended`);
      } catch (err) {
        if (signal.aborted) return;
        wrapTransport(err, host);
      } finally {
        signal.removeEventListener('abort', onAbort);
        stream.destroy();
      }
    })();
  }

  async *logs(id: string, opts: { tail?: number; since?: string; follow?: boolean; signal?: AbortSignal }): AsyncIterable<LogLine> {
    const c = (opts.follow ? this.streams : this.docker).getContainer(id);
    const since = opts.since ? toEngineSince(opts.since) : undefined;
    const base = { stdout: true, stderr: true, timestamps: true, ...(opts.tail !== undefined ? { tail: opts.tail } : {}), ...(since ? { since } : {}) };
    const queue: LogLine[] = [];
    const demux = new LogDemuxer((l) => queue.push(l));
    if (!opts.follow) {
      let buf: Buffer;
      try {
        buf = (await c.logs({ ...base, follow: false })) as unknown as Buffer;
      } catch (err) {
        if (status(err) === 404) throw new BerthError('SESSION_NOT_RUNNING', 'the session has no container');
        wrapTransport(err, this.host);
      }
      demux.push(Buffer.isBuffer(buf) ? buf : Buffer.from(buf as unknown as string));
      demux.end();
      yield* queue;
      return;
    }
    let stream: Readable;
    try {
      stream = (await c.logs({ ...base, follow: true, ...(opts.signal ? { abortSignal: opts.signal } : {}) })) as unknown as Readable;
    } catch (err) {
      if (status(err) === 404) throw new BerthError('SESSION_NOT_RUNNING', 'the session has no container');
      wrapTransport(err, this.host);
    }
    const onAbort = () => stream.destroy();
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    try {
      for await (const chunk of stream) {
        demux.push(chunk as Buffer);
        while (queue.length) yield queue.shift()!;
      }
      demux.end();
      while (queue.length) yield queue.shift()!;
    } catch (err) {
      if (opts.signal?.aborted) return;
      wrapTransport(err, this.host);
    } finally {
      opts.signal?.removeEventListener('abort', onAbort);
      stream.destroy();
    }
  }

  async exec(id: string, cmd: string[], opts: { timeoutSec: number; user?: string }): Promise<{ exitCode: number; stdout: string; stderr: string }> {
    const c = this.streams.getContainer(id);
    let exec: Docker.Exec;
    try {
      exec = await c.exec({ Cmd: cmd, AttachStdout: true, AttachStderr: true, AttachStdin: false, Tty: false, ...(opts.user ? { User: opts.user } : {}) });
    } catch (err) {
      if (status(err) === 409) throw new BerthError('SESSION_NOT_RUNNING', 'the session container is not running');
      if (status(err) !== undefined) throw new BerthError('CONTAINER_START_FAILED', `cannot exec: ${engineMessage(err)}`);
      wrapTransport(err, this.host);
    }
    const out = { stdout: '', stderr: '' };
    const MAX = 4 * 1024 * 1024;
    const stream = (await exec.start({ hijack: true, stdin: false })) as unknown as Readable;
    const demux = new Demuxer((s, line) => {
      if (out[s].length < MAX) out[s] += `${line}\n`;
    });
    let timer: NodeJS.Timeout | undefined;
    const done = new Promise<void>((resolve, reject) => {
      stream.on('data', (c: Buffer) => demux.push(c));
      stream.on('end', resolve);
      stream.on('close', resolve);
      stream.on('error', reject);
    });
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        stream.destroy();
        reject(new BerthError('EXEC_TIMEOUT', `command did not finish within ${opts.timeoutSec}s`, { details: { cmd } }));
      }, opts.timeoutSec * 1000);
    });
    try {
      await Promise.race([done, timeout]);
    } finally {
      clearTimeout(timer);
    }
    demux.end();
    // The exit code can lag the end of the stream by a moment.
    for (let i = 0; i < 50; i++) {
      const info = await exec.inspect();
      if (!info.Running && info.ExitCode !== null) return { exitCode: info.ExitCode, ...out };
      await new Promise((r) => setTimeout(r, 20));
    }
    return { exitCode: -1, ...out };
  }

  /**
   * The command attached over a hijacked connection (the engine's exec start with stdin): stdin is
   * what we write, half-closing it is EOF; without a terminal the output is the engine's
   * multiplexed frames, with one it is the raw terminal. Closing the connection makes the engine
   * close stdin and, with a terminal, the terminal's master side (the command gets SIGHUP).
   */
  async execStream(id: string, req: ExecRequest): Promise<ExecSession> {
    const c = this.streams.getContainer(id);
    const mark = randomBytes(12).toString('hex');
    const size = req.tty && req.size ? { ConsoleSize: [req.size.rows, req.size.cols] } : {};
    let exec: Docker.Exec;
    try {
      exec = await c.exec({
        Cmd: req.cmd,
        AttachStdin: req.stdin,
        AttachStdout: true,
        AttachStderr: true,
        Tty: req.tty,
        ...(req.user ? { User: req.user } : {}),
        Env: [...Object.entries(req.env ?? {}).map(([k, v]) => `${k}=${v}`), `${EXEC_MARK}=${mark}`],
        ...(req.workdir ? { WorkingDir: req.workdir } : {}),
        ...size,
      } as Docker.ExecCreateOptions);
    } catch (err) {
      if (status(err) === 409 || status(err) === 404) throw new BerthError('SESSION_NOT_RUNNING', 'the session container is not running');
      if (status(err) !== undefined) throw new BerthError('CONTAINER_START_FAILED', `cannot exec: ${engineMessage(err)}`);
      wrapTransport(err, this.host);
    }
    let sock: Duplex;
    try {
      sock = (await exec.start({ hijack: true, stdin: req.stdin, Tty: req.tty, ...size } as Docker.ExecStartOptions)) as unknown as Duplex;
    } catch (err) {
      if (status(err) === 409 || status(err) === 404) throw new BerthError('SESSION_NOT_RUNNING', 'the session container is not running');
      if (status(err) !== undefined) throw new BerthError('CONTAINER_START_FAILED', `cannot exec: ${engineMessage(err)}`);
      wrapTransport(err, this.host);
    }
    // The engine keeps the command (and its terminal) when the attached connection goes: it has no
    // call to signal an exec. So a detached command gets the hangup a terminal would give it: SIGHUP
    // to every process carrying this exec's mark in its environment (the command and what it
    // started), sent by a second exec as the same user. Best effort: an image without sh, tr and
    // grep keeps the command, as `docker exec` would.
    const hangUp = async () => {
      try {
        const info = await this.docker.getExec(exec.id).inspect();
        if (!info.Running) return;
        const killer = await this.docker.getContainer(id).exec({
          Cmd: ['sh', '-c', HANGUP_SCRIPT, 'berth-hangup', `${EXEC_MARK}=${mark}`],
          AttachStdout: false,
          AttachStderr: false,
          ...(req.user ? { User: req.user } : {}),
        });
        await killer.start({ Detach: true });
      } catch {
        // Gone already, or the engine is away: nothing left to hang up, or nothing we can do.
      }
    };
    let closed = false;
    // An error after close() (the reset of our own destroy) is no news; before it, output ends with it.
    sock.on('error', () => {});
    if (!req.stdin) sock.end();
    const host = this.host;
    const docker = this.docker;
    const resize = async (size: { cols: number; rows: number }) => {
      await docker.getExec(exec.id).resize({ h: size.rows, w: size.cols });
    };
    // Engines before API 1.42 ignore ConsoleSize, and the terminal may not exist the moment start
    // returns: the first size is set here, retried briefly (as the docker CLI does), before any input.
    if (req.tty && req.size) {
      for (let i = 0; i < 10; i++) {
        try {
          await resize(req.size);
          break;
        } catch {
          await new Promise((r) => setTimeout(r, 20 * (i + 1)));
        }
      }
    }
    const output = (async function* (): AsyncGenerator<ExecOutput> {
      const queue: ExecOutput[] = [];
      const split = new FrameSplitter((stream, data) => queue.push({ stream, data }));
      try {
        for await (const chunk of sock) {
          if (req.tty) yield { stream: 'stdout', data: chunk as Buffer };
          else {
            split.push(chunk as Buffer);
            while (queue.length) yield queue.shift()!;
          }
        }
      } catch (err) {
        if (closed) return;
        wrapTransport(err, host);
      }
    })();
    return {
      output,
      async write(data) {
        if (closed || !sock.writable) return;
        if (!sock.write(data)) await new Promise((r) => (sock.once('drain', r), sock.once('close', r)));
      },
      endStdin() {
        if (sock.writable) sock.end();
      },
      async resize(s) {
        if (!req.tty) return;
        try {
          await resize(s);
        } catch {
          // The command ended meanwhile, or its terminal is not there yet: a resize is advice.
        }
      },
      async exitCode() {
        // The exit code can lag the end of the output by a moment.
        const deadline = Date.now() + 10_000;
        while (Date.now() < deadline) {
          try {
            const info = await docker.getExec(exec.id).inspect();
            if (!info.Running && info.ExitCode !== null) return info.ExitCode;
          } catch (err) {
            if (status(err) === 404) return -1;
            wrapTransport(err, host);
          }
          await new Promise((r) => setTimeout(r, 25));
        }
        return -1;
      },
      close() {
        if (closed) return;
        closed = true;
        sock.destroy();
        void hangUp();
      },
    };
  }
}
