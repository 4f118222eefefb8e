import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, open, readdir, rename, rm, stat, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import { encodeLine, listSegments, parseStored, readSegment, segmentFile, tsKey, type StoredLine } from './format.js';

/**
 * Where a session's stored output ends: the last engine line's timestamp and how many engine lines
 * (whole lines, not pieces or berth markers) carry exactly that timestamp. Resuming from the engine
 * with `since = ts` (inclusive) skips lines before `ts` and the first `count` lines at `ts`.
 */
export interface ResumePoint {
  ts: string | null;
  count: number;
}

export interface WriterOptions {
  segmentBytes: number;
  /** Called after a closed segment has been compressed (retention checks the session's size then). */
  onCompressed?: () => void | Promise<void>;
  onError?: (err: Error) => void;
}

/** Bytes read from the end of the current segment to find where it ends; more only when needed. */
const TAIL_WINDOW = 2 * 1024 * 1024;

/**
 * Appends one session's lines to its segments: one write per batch (no fsync: what a kill -9
 * loses is read again from the engine on resume), a new segment past `segmentBytes`, closed ones
 * gzipped on zlib's thread pool. Opening truncates a torn tail (a line cut by a kill, or pieces of
 * a long line without their last one) and finds the resume point.
 */
export class SegmentWriter {
  private fh: FileHandle | null = null;
  private size = 0;
  private compressing: Promise<void> = Promise.resolve();
  private lastKey: string | null;

  private constructor(
    readonly dir: string,
    private n: number,
    private readonly opts: WriterOptions,
    readonly resume: ResumePoint,
  ) {
    this.lastKey = resume.ts === null ? null : tsKey(resume.ts);
  }

  static async open(dir: string, opts: WriterOptions): Promise<SegmentWriter> {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    for (const leftover of await tmpFiles(dir)) await rm(join(dir, leftover), { force: true });
    const segs = await listSegments(dir);
    const current = segs.at(-1);
    let n = current?.n ?? 1;
    if (current && !current.plain) n = current.n + 1; // the newest was closed already: start the next
    const path = join(dir, segmentFile(n));
    const end = current?.plain ? await truncateTornTail(path) : 0;
    const resume = await findResume(dir);
    const w = new SegmentWriter(dir, n, opts, resume);
    w.fh = await open(path, 'a', 0o600);
    w.size = end;
    // Closed segments a crash left uncompressed.
    for (const s of segs) if (s.n < n && s.plain) w.compress(s.n);
    return w;
  }

  /** The resume point after everything appended so far. */
  get position(): ResumePoint {
    return { ts: this.resume.ts, count: this.resume.count };
  }

  /** Appends the lines in order with one write. */
  async append(lines: StoredLine[]): Promise<void> {
    if (!lines.length) return;
    if (!this.fh) throw new Error('log writer closed');
    let text = '';
    let { ts, count } = this.resume;
    let key = this.lastKey;
    for (const l of lines) {
      text += encodeLine(l);
      if (l.stream === 'berth' || l.partial) continue;
      const k = tsKey(l.ts);
      if (k === key) count++;
      else {
        key = k;
        ts = l.ts;
        count = 1;
      }
    }
    const buf = Buffer.from(text, 'utf8');
    await this.fh.write(buf, 0, buf.length);
    this.size += buf.length;
    this.lastKey = key;
    this.resume.ts = ts;
    this.resume.count = count;
    if (this.size >= this.opts.segmentBytes) await this.rotate();
  }

  /** Closes the current segment and starts the next; the closed one is compressed in the background. */
  private async rotate(): Promise<void> {
    const closed = this.n;
    await this.fh!.close();
    this.n++;
    this.fh = await open(join(this.dir, segmentFile(this.n)), 'a', 0o600);
    this.size = 0;
    this.compress(closed);
  }

  private compress(n: number): void {
    this.compressing = this.compressing.then(async () => {
      try {
        await compressSegment(this.dir, n);
        await this.opts.onCompressed?.();
      } catch (err) {
        this.opts.onError?.(err as Error);
      }
    });
  }

  /** Waits for compressions in flight (tests; shutdown). */
  async idle(): Promise<void> {
    await this.compressing;
  }

  async close(): Promise<void> {
    const fh = this.fh;
    this.fh = null;
    await fh?.close();
    await this.compressing;
  }
}

async function tmpFiles(dir: string): Promise<string[]> {
  return (await readdir(dir)).filter((f) => /^seg-\d+\.jsonl\.gz\.tmp$/.test(f));
}

/**
 * gzip of seg-N.jsonl → seg-N.jsonl.gz.tmp, fsynced, renamed to .gz, the directory fsynced, and
 * only then the plain file removed: at every instant the segment is whole in one file or both.
 */
export async function compressSegment(dir: string, n: number): Promise<void> {
  const src = join(dir, segmentFile(n));
  const dst = join(dir, segmentFile(n, true));
  const tmp = `${dst}.tmp`;
  await pipeline(createReadStream(src), createGzip({ level: 6 }), createWriteStream(tmp, { mode: 0o600 }));
  const fh = await open(tmp, 'r+');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(tmp, dst);
  await syncDir(dir);
  await rm(src, { force: true });
}

async function syncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } catch {
    // Some filesystems refuse fsync on a directory; the rename is still ordered before the unlink.
  } finally {
    await fh.close();
  }
}

/**
 * Cuts the segment after its last whole line, and before a trailing run of `partial` pieces whose
 * last piece never made it. Returns the new size.
 */
async function truncateTornTail(path: string): Promise<number> {
  const size = (await stat(path)).size;
  if (size === 0) return 0;
  const fh = await open(path, 'r+');
  try {
    let window = Math.min(size, TAIL_WINDOW);
    for (;;) {
      const start = size - window;
      const buf = Buffer.alloc(window);
      await fh.read(buf, 0, window, start);
      let end = buf.lastIndexOf(0x0a) + 1; // after the last newline
      // Drop trailing pieces of an unfinished long line, and lines that do not parse.
      let cut = end;
      while (cut > 0) {
        const prev = cut >= 2 ? buf.lastIndexOf(0x0a, cut - 2) + 1 : 0;
        if (prev === 0 && start > 0) {
          cut = 0; // the line may begin before this window: look further back
          break;
        }
        const l = parseStored(buf.subarray(prev, cut - 1).toString('utf8'));
        if (l && !l.partial) break;
        cut = prev;
      }
      if (cut === 0 && start > 0) {
        window = Math.min(size, window * 4);
        continue;
      }
      end = cut;
      const newSize = start + end;
      if (newSize !== size) await fh.truncate(newSize);
      return newSize;
    }
  } finally {
    await fh.close();
  }
}

/** The last engine line's ts and how many engine lines carry it, across segments if need be. */
async function findResume(dir: string): Promise<ResumePoint> {
  const segs = await listSegments(dir);
  let ts: string | null = null;
  let key: string | null = null;
  let count = 0;
  for (let i = segs.length - 1; i >= 0; i--) {
    const lines = (await readSegment(dir, segs[i]!)).split('\n');
    for (let j = lines.length - 1; j >= 0; j--) {
      const l = parseStored(lines[j]!);
      if (!l || l.stream === 'berth' || l.partial) continue;
      const k = tsKey(l.ts);
      if (key === null) {
        key = k;
        ts = l.ts;
        count = 1;
      } else if (k === key) count++;
      else return { ts, count };
    }
  }
  return { ts, count };
}
