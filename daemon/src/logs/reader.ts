import { createReadStream } from 'node:fs';
import { open, readdir, stat, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { createGunzip } from 'node:zlib';
import { BerthError, tsKey, type LogLine } from '@berth/client-sdk/protocol';
import { listSegments, type SegmentEntry } from './format.js';
import type { Clock } from '../shared/clock.js';

/**
 * Reads berth's own log store, `<root>/<session-id>/seg-NNNNNN.jsonl[.gz]` (one JSON LogLine a
 * line; the highest-numbered segment is the one being written; a closed one is gzipped, and while
 * both files exist the .jsonl is read). Everything is read in chunks as the consumer pulls: no
 * segment is ever loaded whole, and a slow consumer holds the reader where it is.
 */

/**
 * A line as stored: one JSON LogLine, no newline. What the filters did not need to parse is only
 * checked for the writer's shape (`{"ts":"...}`): a line cut short never ends the segment's text
 * with a newline, so it is never one; parseStored skips anything else.
 */
export type StoredLine = string;

export interface LogReadOptions {
  /** ISO times (parse with logTimeFilter): only lines at or after `since`, at or before `until`. */
  since?: string;
  until?: string;
  /** Only lines whose text matches. */
  grep?: RegExp;
  /** Only the last N lines that pass the filters (then, with follow, every new one). */
  tail?: number;
  /** Keep reading new lines as the writer appends them, until the session is removed and read, `until` passes, or `signal` aborts. */
  follow?: boolean;
  /** Also ends a follow once it returns true (the session is gone) and what is stored is read, as removed.json does. */
  ended?: () => boolean;
  signal?: AbortSignal;
}

type Segment = SegmentEntry;

type Verdict = 'take' | 'skip' | 'past';

const CHUNK = 256 * 1024;
/** A line is at most 64 KiB of text, JSON-escaped (6 bytes a character at worst): anything longer without a newline is not a line. */
const MAX_LINE_BYTES = 64 * 1024 * 6 + 4096;
const SAFE_ID = /^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$/;

export class LogReader {
  private readonly pollMs: number;

  constructor(private readonly d: { root: string; clock: Clock; pollMs?: number }) {
    this.pollMs = d.pollMs ?? 250;
  }

  dir(id: string): string {
    if (!SAFE_ID.test(id)) throw new BerthError('INVALID_PARAMS', `not a session id: ${JSON.stringify(id.slice(0, 100))}`);
    return join(this.d.root, id);
  }

  /** Whether the store has the session's directory (the writer makes it when it starts ingesting the session). */
  async exists(id: string): Promise<boolean> {
    try {
      return (await stat(this.dir(id))).isDirectory();
    } catch {
      return false;
    }
  }

  /** Whether the store holds any segment of the session. */
  async has(id: string): Promise<boolean> {
    return (await this.segments(id)).length > 0;
  }

  /** Whether the writer marked the session removed (removed.json): no more lines will come. */
  async removed(id: string): Promise<boolean> {
    try {
      await stat(join(this.dir(id), 'removed.json'));
      return true;
    } catch {
      return false;
    }
  }

  /** The session's segments in order; [] when it has none. */
  async segments(id: string): Promise<Segment[]> {
    try {
      return await listSegments(this.dir(id));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOTDIR') return [];
      throw err;
    }
  }

  /** The lines one by one (see batches). */
  async *lines(id: string, o: LogReadOptions = {}): AsyncGenerator<LogLine> {
    for await (const b of this.batches(id, o)) {
      for (const l of b) {
        if (o.signal?.aborted) return;
        const rec = parseStored(l);
        if (rec) yield rec;
      }
    }
  }

  /**
   * The session's lines in stored order, in batches (one per chunk read), filtered. Unparseable
   * lines (a torn last line, garbage) are skipped. Ends at the end of the history, or with
   * `follow` as LogReadOptions says.
   */
  async *batches(id: string, o: LogReadOptions = {}): AsyncGenerator<StoredLine[]> {
    const verdict = filterOf(o);
    let segs = await this.segments(id);
    const filtered = o.since !== undefined || o.until !== undefined || o.grep !== undefined;
    // Segments hold lines in time order: those wholly before since, or after until, are not read.
    const { lo, hi } = await this.timeRange(id, segs, o);
    const start = o.tail !== undefined ? await this.tailStart(id, segs, o.tail, filtered ? verdict : null, lo, hi) : { index: lo, skip: 0 };
    let skip = start.skip;
    let i = start.index;
    let past = false;
    const plain = o.since === undefined && o.until === undefined && !o.grep;
    const pick = (lines: string[]): StoredLine[] => {
      const out: StoredLine[] = [];
      for (const raw of lines) {
        if (plain) {
          if (!looksStored(raw)) continue;
          if (skip > 0) skip--;
          else out.push(raw);
          continue;
        }
        const rec = parseStored(raw);
        if (!rec) continue;
        const v = verdict(rec);
        if (v === 'past') {
          if (o.follow) {
            past = true;
            break;
          }
          continue;
        }
        if (v === 'skip') continue;
        if (skip > 0) {
          skip--;
          continue;
        }
        out.push(raw);
      }
      return out;
    };
    while (!o.signal?.aborted) {
      if (!o.follow && i >= hi) return;
      if (i >= segs.length) {
        if (!o.follow) return;
        // Waiting for the first segment, or for one after the last read.
        const removed = (await this.removed(id)) || o.ended?.() === true;
        const next = await this.segments(id);
        const from = next.findIndex((s) => s.n > (segs[i - 1]?.n ?? -1));
        if (from >= 0) {
          segs = next;
          i = from;
          continue;
        }
        if (removed) return;
        await this.d.clock.sleep(this.pollMs, o.signal ?? new AbortController().signal);
        continue;
      }
      const seg = segs[i]!;
      const current = o.follow && i === segs.length - 1 && seg.plain;
      if (!current) {
        for await (const chunk of this.segmentLines(id, seg, o.signal)) {
          const b = pick(chunk);
          if (b.length) yield b;
          if (past) return;
        }
        i++;
        continue;
      }
      // The segment being written: read what is there, then wait for more or for the next segment.
      const cursor = await PlainCursor.open(join(this.dir(id), `seg-${pad(seg.n)}.jsonl`));
      if (!cursor) {
        segs = await this.segments(id);
        i = segs.findIndex((s) => s.n >= seg.n);
        if (i < 0) i = segs.length;
        continue;
      }
      try {
        for (;;) {
          const chunk = await cursor.read();
          if (chunk === null) {
            const removed = (await this.removed(id)) || o.ended?.() === true;
            const next = await this.segments(id);
            const later = next.findIndex((s) => s.n > seg.n);
            if (later >= 0 || removed) {
              // The writer finished this segment before it began the next (or before the removal): read it to its end.
              for (let rest = await cursor.read(); rest !== null; rest = await cursor.read()) {
                const b = pick(rest);
                if (b.length) yield b;
                if (past) return;
              }
              if (later < 0) return;
              segs = next;
              i = later;
              break;
            }
            await this.d.clock.sleep(this.pollMs, o.signal ?? new AbortController().signal);
            if (o.signal?.aborted) return;
            continue;
          }
          const b = pick(chunk);
          if (b.length) yield b;
          if (past) return;
        }
      } finally {
        await cursor.close();
      }
    }
  }

  /**
   * Where the last `tail` lines passing the filters begin: the segments are counted from the
   * newest back until they hold that many, so `-n 10` reads the last segment or two, not the history.
   */
  private async tailStart(
    id: string,
    segs: Segment[],
    tail: number,
    verdict: ((l: LogLine) => Verdict) | null,
    lo: number,
    hi: number,
  ): Promise<{ index: number; skip: number }> {
    let need = tail;
    for (let i = hi - 1; i >= lo; i--) {
      let count = 0;
      for await (const chunk of this.segmentLines(id, segs[i]!)) {
        for (const raw of chunk) {
          if (!verdict) {
            if (looksStored(raw)) count++;
            continue;
          }
          const rec = parseStored(raw);
          if (rec && verdict(rec) === 'take') count++;
        }
      }
      if (count >= need) return { index: i, skip: count - need };
      need -= count;
    }
    return { index: lo, skip: 0 };
  }

  /**
   * The segments [lo, hi) that can hold lines between since and until, by their first lines: from
   * the last one that begins before since, up to the first that begins after until (not with
   * follow: more may come).
   */
  private async timeRange(id: string, segs: Segment[], o: LogReadOptions): Promise<{ lo: number; hi: number }> {
    let lo = 0;
    let hi = segs.length;
    if (o.since !== undefined) {
      const since = tsKey(o.since);
      for (let i = segs.length - 1; i > 0; i--) {
        const first = await this.firstKey(id, segs[i]!);
        if (first !== null && first < since) {
          lo = i;
          break;
        }
      }
    }
    if (o.until !== undefined && !o.follow) {
      const until = tsKey(o.until);
      for (let i = lo + 1; i < segs.length; i++) {
        const first = await this.firstKey(id, segs[i]!);
        if (first !== null && first > until) {
          hi = i;
          break;
        }
      }
    }
    return { lo, hi };
  }

  /** The time key of a segment's first line, or null when it has none that parses. */
  private async firstKey(id: string, seg: Segment): Promise<string | null> {
    for await (const chunk of this.segmentLines(id, seg)) {
      for (const raw of chunk) {
        const rec = parseStored(raw);
        if (rec) return tsKey(rec.ts);
      }
    }
    return null;
  }

  /** A whole segment's complete lines, chunk by chunk: its .jsonl when there, else its .jsonl.gz. */
  private async *segmentLines(id: string, seg: Segment, signal?: AbortSignal): AsyncGenerator<string[]> {
    const base = join(this.dir(id), `seg-${pad(seg.n)}.jsonl`);
    if (seg.plain) {
      const cursor = await PlainCursor.open(base);
      if (cursor) {
        try {
          for (let c = await cursor.read(); c !== null && !signal?.aborted; c = await cursor.read()) yield c;
        } finally {
          await cursor.close();
        }
        return;
      }
      // Compressed and removed since the listing: the .gz is complete now.
    }
    yield* gzLines(`${base}.gz`, signal);
  }
}

/** Reads a plain segment from where it was left, as it grows; keeps an incomplete last line for the next read. */
class PlainCursor {
  private pos = 0;
  private rest: Buffer = Buffer.alloc(0);
  private readonly buf = Buffer.allocUnsafe(CHUNK);

  private constructor(private readonly fh: FileHandle) {}

  static async open(path: string): Promise<PlainCursor | null> {
    try {
      return new PlainCursor(await open(path, 'r'));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    }
  }

  /** The complete lines of the next chunk (possibly none), or null at the current end of the file. */
  async read(): Promise<string[] | null> {
    const { bytesRead } = await this.fh.read(this.buf, 0, CHUNK, this.pos);
    if (bytesRead === 0) {
      // Truncated under us (the writer cut a torn line on reopen): go on from its new end.
      const { size } = await this.fh.stat();
      if (size < this.pos) {
        this.pos = size;
        this.rest = Buffer.alloc(0);
      }
      return null;
    }
    this.pos += bytesRead;
    const r = splitLines(this.rest, this.buf.subarray(0, bytesRead));
    this.rest = r.rest;
    return r.lines;
  }

  close(): Promise<void> {
    return this.fh.close();
  }
}

async function* gzLines(path: string, signal?: AbortSignal): AsyncGenerator<string[]> {
  const gunzip = createGunzip({ chunkSize: CHUNK });
  const file = createReadStream(path, { highWaterMark: CHUNK });
  file.on('error', (err) => gunzip.destroy(err));
  file.pipe(gunzip);
  let rest: Buffer = Buffer.alloc(0);
  try {
    for await (const chunk of gunzip as AsyncIterable<Buffer>) {
      if (signal?.aborted) return;
      const r = splitLines(rest, chunk);
      rest = r.rest;
      if (r.lines.length) yield r.lines;
    }
  } catch (err) {
    // Gone between the listing and now, or a damaged file: what was read stands, the rest is skipped.
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT' && !(err as NodeJS.ErrnoException).code?.startsWith('Z_')) throw err;
  } finally {
    file.destroy();
    gunzip.destroy();
  }
}

/** `rest` + `chunk` cut at newlines: the complete lines, and what follows the last newline. */
function splitLines(rest: Buffer, chunk: Buffer): { lines: string[]; rest: Buffer } {
  const nl = chunk.lastIndexOf(0x0a);
  if (nl < 0) {
    const joined = rest.length ? Buffer.concat([rest, chunk]) : Buffer.from(chunk);
    // No line is this long: drop it rather than grow without bound.
    return { lines: [], rest: joined.length > MAX_LINE_BYTES ? Buffer.alloc(0) : joined };
  }
  const head = rest.length ? Buffer.concat([rest, chunk.subarray(0, nl)]).toString('utf8') : chunk.toString('utf8', 0, nl);
  const tail = chunk.subarray(nl + 1);
  return { lines: head.split('\n'), rest: tail.length > MAX_LINE_BYTES ? Buffer.alloc(0) : Buffer.from(tail) };
}

/** Whether a line has the writer's shape, `{"ts":"...}` (what a read without filters checks instead of parsing). */
function looksStored(raw: string): boolean {
  return raw.startsWith('{"ts":"') && raw.charCodeAt(raw.length - 1) === 0x7d;
}

/** A stored line as a LogLine, or null when it is not one. */
export function parseStored(raw: string): LogLine | null {
  if (raw.length < 2 || raw.charCodeAt(0) !== 0x7b) return null;
  let v: unknown;
  try {
    v = JSON.parse(raw);
  } catch {
    return null;
  }
  const l = v as Partial<LogLine> | null;
  if (!l || typeof l.ts !== 'string' || typeof l.line !== 'string' || (l.stream !== 'stdout' && l.stream !== 'stderr' && l.stream !== 'berth')) return null;
  return l as LogLine;
}

function filterOf(o: LogReadOptions): (l: LogLine) => Verdict {
  const since = o.since !== undefined ? tsKey(o.since) : null;
  const until = o.until !== undefined ? tsKey(o.until) : null;
  const grep = o.grep;
  return (l) => {
    if (since === null && until === null && !grep) return 'take';
    const k = since !== null || until !== null ? tsKey(l.ts) : '';
    if (since !== null && k < since) return 'skip';
    if (until !== null && k > until) return 'past';
    if (grep) {
      grep.lastIndex = 0;
      if (!grep.test(l.line)) return 'skip';
    }
    return 'take';
  };
}

function pad(n: number): string {
  return String(n).padStart(6, '0');
}
