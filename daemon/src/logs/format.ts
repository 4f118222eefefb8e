import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import type { LogLine } from '@berth/client-sdk/protocol';

/**
 * The on-disk layout of a session's stored output, shared by the writer and the reader:
 * `$BERTH_HOME/logs/<session-id>/seg-NNNNNN.jsonl` (the newest, being written) and
 * `seg-NNNNNN.jsonl.gz` (closed, compressed; when both exist they hold the same bytes). One JSON
 * object per line: `{ts, stream, line}` plus `partial`, `dropped`, `event` when set.
 */
export type StoredLine = LogLine;

/** A line longer than this (UTF-8 bytes) is stored in pieces; all but the last carry `partial`. */
export const MAX_LINE_BYTES = 64 * 1024;

export const SEGMENT_RE = /^seg-(\d{6,})\.jsonl(\.gz)?$/;

export function segmentFile(n: number, gz = false): string {
  return `seg-${String(n).padStart(6, '0')}.jsonl${gz ? '.gz' : ''}`;
}

/** Engine timestamps with the fraction padded to 9 digits (the protocol's, shared with readers and the CLI). */
export { tsKey } from '@berth/client-sdk/protocol';

export interface SegmentEntry {
  n: number;
  /** The plain file exists (the segment being written, or one not yet compressed). */
  plain: boolean;
  gz: boolean;
}

/** The segments of one session directory, oldest first. */
export async function listSegments(dir: string): Promise<SegmentEntry[]> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  const byN = new Map<number, SegmentEntry>();
  for (const name of names) {
    const m = SEGMENT_RE.exec(name);
    if (!m) continue;
    const n = Number(m[1]);
    const e = byN.get(n) ?? { n, plain: false, gz: false };
    if (m[2]) e.gz = true;
    else e.plain = true;
    byN.set(n, e);
  }
  return [...byN.values()].sort((a, b) => a.n - b.n);
}

/** One segment's whole text (the plain file when it exists, else the gzip, which is complete once the plain file is gone). */
export async function readSegment(dir: string, e: SegmentEntry): Promise<string> {
  if (e.plain) {
    try {
      return await readFile(join(dir, segmentFile(e.n)), 'utf8');
    } catch (err) {
      // Compressed meanwhile: the plain file goes only after the gzip is complete.
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }
  return gunzipSync(await readFile(join(dir, segmentFile(e.n, true)))).toString('utf8');
}

/** Parses one stored line; null for anything that is not one (a torn tail, garbage). */
export function parseStored(text: string): StoredLine | null {
  if (!text) return null;
  try {
    const v = JSON.parse(text) as StoredLine;
    if (typeof v !== 'object' || v === null || typeof v.ts !== 'string' || typeof v.line !== 'string') return null;
    return v;
  } catch {
    return null;
  }
}

/** Serialises one line (split into pieces when long) in the fixed key order. */
export function encodeLine(l: StoredLine): string {
  const parts = splitLine(l.line);
  let out = '';
  for (let i = 0; i < parts.length; i++) {
    const last = i === parts.length - 1;
    const o: Record<string, unknown> = { ts: l.ts, stream: l.stream, line: parts[i] };
    if (!last || l.partial) o.partial = true;
    if (l.dropped !== undefined) o.dropped = l.dropped;
    if (l.event !== undefined) o.event = l.event;
    out += `${JSON.stringify(o)}\n`;
  }
  return out;
}

/** `text` in pieces of at most MAX_LINE_BYTES UTF-8 bytes, never cutting a character. */
export function splitLine(text: string): string[] {
  // A UTF-16 unit is at most 3 bytes (a surrogate pair is 4 for 2 units).
  if (text.length * 3 <= MAX_LINE_BYTES) return [text];
  const buf = Buffer.from(text, 'utf8');
  if (buf.length <= MAX_LINE_BYTES) return [text];
  const parts: string[] = [];
  let start = 0;
  while (start < buf.length) {
    let end = Math.min(start + MAX_LINE_BYTES, buf.length);
    // Back up to a character boundary (never onto a UTF-8 continuation byte).
    while (end < buf.length && end > start && (buf[end]! & 0xc0) === 0x80) end--;
    parts.push(buf.subarray(start, end).toString('utf8'));
    start = end;
  }
  return parts;
}

/** Reads every stored line of a session directory in order (tests and small tools; not for huge logs). */
export async function readAllStored(dir: string): Promise<StoredLine[]> {
  const out: StoredLine[] = [];
  for (const e of await listSegments(dir)) {
    for (const text of (await readSegment(dir, e)).split('\n')) {
      const l = parseStored(text);
      if (l) out.push(l);
    }
  }
  return out;
}
