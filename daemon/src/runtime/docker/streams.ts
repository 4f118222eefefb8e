import type { Readable } from 'node:stream';
import type Docker from 'dockerode';
import { BerthError, type LogLine } from '@berth/client-sdk/protocol';
import type { RuntimeEvent } from '../port.js';
import { LABELS, labelFilter } from '../labels.js';
import { Demuxer, toEngineSince, toLogLine } from './demux.js';
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
    const demux = new Demuxer((stream, raw) => queue.push(toLogLine(stream, raw)));
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
}
