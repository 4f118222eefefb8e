import { StringDecoder } from 'node:string_decoder';
import type { LogLine } from '@berth/client-sdk/protocol';

/**
 * Splits the engine's multiplexed log/exec stream (8-byte frame headers: stream, 0, 0, 0, size BE)
 * into its frames' payloads, as bytes, per stream. Feed chunks as they come; a header or payload
 * split across chunks waits for the rest.
 */
export class FrameSplitter {
  private buf: Buffer = Buffer.alloc(0);

  constructor(private readonly onFrame: (stream: 'stdout' | 'stderr', payload: Buffer) => void) {}

  push(chunk: Buffer): void {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    while (this.buf.length >= 8) {
      const size = this.buf.readUInt32BE(4);
      if (this.buf.length < 8 + size) break;
      this.onFrame(this.buf[0] === 2 ? 'stderr' : 'stdout', this.buf.subarray(8, 8 + size));
      this.buf = this.buf.subarray(8 + size);
    }
  }
}

/**
 * The same stream split into lines per stream. Feed chunks as they come; `end()` flushes partial
 * lines. A character split across frames or chunks is decoded whole (one UTF-8 decoder per stream).
 */
export class Demuxer {
  private readonly frames: FrameSplitter;
  private readonly partial = { stdout: '', stderr: '' };
  private readonly decoders = { stdout: new StringDecoder('utf8'), stderr: new StringDecoder('utf8') };

  constructor(private readonly onLine: (stream: 'stdout' | 'stderr', line: string) => void) {
    this.frames = new FrameSplitter((kind, payload) => this.text(kind, this.decoders[kind].write(payload)));
  }

  push(chunk: Buffer): void {
    this.frames.push(chunk);
  }

  end(): void {
    for (const s of ['stdout', 'stderr'] as const) {
      this.text(s, this.decoders[s].end());
      if (this.partial[s]) this.onLine(s, this.partial[s]);
      this.partial[s] = '';
    }
  }

  private text(stream: 'stdout' | 'stderr', s: string): void {
    const parts = (this.partial[stream] + s).split('\n');
    this.partial[stream] = parts.pop()!;
    for (const p of parts) this.onLine(stream, p);
  }
}

/** `2026-11-22T07:41:23.123456789Z text` → LogLine (the engine's timestamps option). */
export function toLogLine(stream: 'stdout' | 'stderr', raw: string): LogLine {
  const i = raw.indexOf(' ');
  const ts = i > 0 ? raw.slice(0, i) : '';
  if (i > 0 && /^\d{4}-\d\d-\d\dT/.test(ts)) return { ts: fixedNano(ts), stream, line: raw.slice(i + 1).replace(/\r$/, '') };
  return { ts: new Date().toISOString(), stream, line: raw.replace(/\r$/, '') };
}

/** Pads the fraction to 9 digits so timestamps compare as strings in time order. */
export function fixedNano(ts: string): string {
  const m = /^(.*T\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$/.exec(ts);
  if (!m) return ts;
  return `${m[1]}.${(m[2] ?? '').padEnd(9, '0').slice(0, 9)}${m[3]}`;
}

/** ISO time (nanoseconds allowed) → the engine's `seconds.nanoseconds` form for `since`. */
export function toEngineSince(iso: string): string {
  const m = /\.(\d+)/.exec(iso);
  const secs = Math.floor(Date.parse(iso) / 1000);
  return `${secs}.${(m?.[1] ?? '0').padEnd(9, '0').slice(0, 9)}`;
}
