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

/**
 * A container's log stream as the engine sends it with timestamps: one frame per log message,
 * `TS text`, the text ending in `\n` unless the engine cut a long line into pieces (16 KiB, each
 * with its own TS and no newline). The pieces are joined under the first piece's TS; a line longer
 * than `maxChars` is emitted in parts marked `partial`, so an endless line costs bounded memory.
 */
export class LogDemuxer {
  private readonly frames: FrameSplitter;
  private readonly cur = { stdout: { open: false, ts: '', text: '' }, stderr: { open: false, ts: '', text: '' } };
  private readonly decoders = { stdout: new StringDecoder('utf8'), stderr: new StringDecoder('utf8') };

  constructor(
    private readonly onLine: (l: LogLine) => void,
    private readonly maxChars = 64 * 1024,
  ) {
    this.frames = new FrameSplitter((kind, payload) => this.frame(kind, payload));
  }

  push(chunk: Buffer): void {
    this.frames.push(chunk);
  }

  end(): void {
    for (const s of ['stdout', 'stderr'] as const) {
      const c = this.cur[s];
      c.text += this.decoders[s].end();
      if (c.open && c.text) this.emit(s);
      c.open = false;
      c.text = '';
    }
  }

  private frame(stream: 'stdout' | 'stderr', payload: Buffer): void {
    let ts = '';
    let body = payload;
    const sp = payload.indexOf(0x20);
    if (sp > 0 && sp <= 40) {
      const head = payload.subarray(0, sp).toString('latin1');
      if (/^\d{4}-\d\d-\d\dT/.test(head)) {
        ts = fixedNano(head);
        body = payload.subarray(sp + 1);
      }
    }
    const c = this.cur[stream];
    let text = this.decoders[stream].write(body);
    for (;;) {
      if (!c.open && text) {
        c.open = true;
        c.ts = ts || new Date().toISOString();
      }
      const nl = text.indexOf('\n');
      if (nl < 0) break;
      if (!c.open) {
        c.open = true;
        c.ts = ts || new Date().toISOString();
      }
      c.text += text.slice(0, nl);
      this.emit(stream);
      c.open = false;
      c.text = '';
      text = text.slice(nl + 1);
    }
    c.text += text;
    while (c.text.length > this.maxChars) {
      let cut = this.maxChars;
      const code = c.text.charCodeAt(cut - 1);
      if (code >= 0xd800 && code <= 0xdbff) cut--; // keep a surrogate pair whole
      const piece = c.text.slice(0, cut);
      c.text = c.text.slice(cut);
      this.onLine({ ts: c.ts, stream, line: piece, partial: true });
    }
  }

  private emit(stream: 'stdout' | 'stderr'): void {
    const c = this.cur[stream];
    this.onLine({ ts: c.ts, stream, line: c.text.endsWith('\r') ? c.text.slice(0, -1) : c.text });
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
