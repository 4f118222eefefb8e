import { appendFileSync, mkdirSync, openSync, readSync, closeSync, fstatSync, renameSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { BridgeRequestRecord } from '@berth/client-sdk/protocol';

/** A session's audit file is rotated (one older file kept) past this size. */
const MAX_FILE_BYTES = 16 * 1024 * 1024;
/** Most of a file read back for `sessions.requests`. */
const MAX_READ_BYTES = 8 * 1024 * 1024;

/**
 * One JSON line per bridged request, per session: `$BERTH_HOME/bridge/audit/<session>.jsonl`
 * (session, time, path, model, status, tokens, duration; never prompt or answer contents). Kept
 * after the session is removed, like its usage.
 */
export class AuditLog {
  readonly dir: string;

  constructor(home: string) {
    this.dir = join(home, 'bridge', 'audit');
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
  }

  private file(session: string): string {
    return join(this.dir, `${session}.jsonl`);
  }

  append(r: BridgeRequestRecord): void {
    const file = this.file(r.session);
    try {
      if (statSync(file).size > MAX_FILE_BYTES) renameSync(file, `${file}.1`);
    } catch {
      // no file yet
    }
    // One write per line with O_APPEND: lines of concurrent requests never interleave.
    appendFileSync(file, `${JSON.stringify(r)}\n`, { mode: 0o600 });
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
