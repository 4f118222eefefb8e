import { BerthError } from '../protocol/index.js';

export interface Out {
  json: boolean;
  stdout: (s: string) => void;
  stderr: (s: string) => void;
}

/** Plain aligned columns for humans. */
export function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(headers), ...rows.map(line)].join('\n') + '\n';
}

export function ago(iso: string, now = Date.now()): string {
  const s = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ago`;
  return `${Math.floor(s / 86400)}d ago`;
}

/** `in 9s` for a time ahead, `now` for one passed. */
export function until(iso: string, now = Date.now()): string {
  const s = Math.round((Date.parse(iso) - now) / 1000);
  return s <= 0 ? 'now' : `in ${duration(s)}`;
}

export function duration(sec: number): string {
  const d = Math.floor(sec / 86400);
  const h = Math.floor((sec % 86400) / 3600);
  const m = Math.floor((sec % 3600) / 60);
  const s = sec % 60;
  return d ? `${d}d${h}h` : h ? `${h}h${m}m` : m ? `${m}m${s}s` : `${s}s`;
}

/** Prints a result: JSON on stdout with --json, else the human rendering. */
export function emit(out: Out, value: unknown, human: () => string): void {
  out.stdout(out.json ? `${JSON.stringify(value, null, 2)}\n` : human());
}

/** Prints an error with its code and hint; returns the exit code. */
export function reportError(out: Out, err: unknown): number {
  if (err instanceof BerthError) {
    if (out.json) {
      out.stderr(`${JSON.stringify({ error: { code: err.code, message: err.message, hint: err.hint, details: err.details } })}\n`);
    } else {
      out.stderr(`error[${err.code}]: ${err.message}\n  hint: ${err.hint}\n`);
    }
    return 1;
  }
  const message = (err as Error)?.message ?? String(err);
  out.stderr(out.json ? `${JSON.stringify({ error: { code: 'INTERNAL_ERROR', message } })}\n` : `error: ${message}\n`);
  return 1;
}
