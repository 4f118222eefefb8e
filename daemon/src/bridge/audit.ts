import { closeSync, fstatSync, mkdirSync, openSync, readSync, renameSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import type { BridgeRequestRecord } from '@berth/client-sdk/protocol';

/** A session's audit file is rotated (one older file kept) past this size. */
const MAX_FILE_BYTES = 16 * 1024 * 1024;
/** Most of a file read back for `sessions.requests`. */
const MAX_READ_BYTES = 8 * 1024 * 1024;
/** Files kept open at once (one per recently active session). */
const MAX_OPEN = 256;

/**
 * One JSON line per bridged request, per session: `$BERTH_HOME/bridge/audit/<session>.jsonl`
 * (session, time, path, model, status, tokens, duration; never prompt or answer contents). Kept
 * after the session is removed, like its usage.
 */
export class AuditLog {
  readonly dir: string;
  /** Open files of the sessions written to lately, with their size (bounded: see MAX_OPEN). */
  private readonly open = new Map<string, { fd: number; size: number }>();

  constructor(home: string) {
    this.dir = join(home, 'bridge', 'audit');
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
  }

  private file(session: string): string {
    return join(this.dir, `${session}.jsonl`);
  }

  append(r: BridgeRequestRecord): void {
    const line = Buffer.from(`${JSON.stringify(r)}\n`);
    let f = this.open.get(r.session);
    if (f && f.size > MAX_FILE_BYTES) {
      this.close(r.session);
      renameSync(this.file(r.session), `${this.file(r.session)}.1`);
      f = undefined;
    }
    if (!f) {
      if (this.open.size >= MAX_OPEN) this.close(this.open.keys().next().value!);
      const fd = openSync(this.file(r.session), 'a', 0o600);
      f = { fd, size: fstatSync(fd).size };
      this.open.set(r.session, f);
    }
    // One write per line with O_APPEND: a line is never torn by another.
    writeSync(f.fd, line);
    f.size += line.length;
  }

  /** Closes the session's file (it is opened again on its next line). */
  close(session: string): void {
    const f = this.open.get(session);
    if (!f) return;
    this.open.delete(session);
    closeSync(f.fd);
  }

  closeAll(): void {
    for (const s of [...this.open.keys()]) this.close(s);
  }

  /** The last `limit` records of the session, oldest first. */
  read(session: string, limit: number): BridgeRequestRecord[] {
    let fd: number;
    try {
      fd = openSync(this.file(session), 'r');
    } catch {
      return [];
    }
    try {
      const size = fstatSync(fd).size;
      const len = Math.min(size, MAX_READ_BYTES);
      const buf = Buffer.alloc(len);
      readSync(fd, buf, 0, len, size - len);
      const lines = buf.toString('utf8').split('\n');
      if (len < size) lines.shift(); // cut mid-line
      const out: BridgeRequestRecord[] = [];
      for (const line of lines.filter(Boolean).slice(-limit)) {
        try {
          out.push(JSON.parse(line) as BridgeRequestRecord);
        } catch {
          // a line torn by a crash: skip it
        }
      }
      return out;
    } finally {
      closeSync(fd);
    }
  }
}
