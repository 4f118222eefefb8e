import { constants } from 'node:fs';
import { open } from 'node:fs/promises';
import { BerthError, MAX_TASK_FILE, TASK_STATES, type ErrorCode, type Pool, type Task, type TaskImportResult } from '../protocol/index.js';
import { ago, cut, line, table, until } from './output.js';
import { humanTokens } from './usage.js';

/*
 * The human renderings of tasks and pools (`berth task ...`, `berth pool ...`), and reading the files
 * they take. Pure functions of protocol values, so they are unit-tested without a daemon. Titles,
 * bodies, summaries and notes are written by people and agents (a task file sits in a repository
 * agents write to): single values go through `line`/`table`, which escape them; text of several lines
 * is printed under `  | ` so none of its lines can pass for one of berth's.
 */

/** Largest task file `berth task import` sends: what berthd reads. */
export const MAX_IMPORT_FILE = MAX_TASK_FILE;

/** The format a task file's name says (.yaml, .yml, .json, .csv), or null. */
export function taskFileFormat(file: string): 'yaml' | 'json' | 'csv' | null {
  const m = /\.(ya?ml|json|csv)$/i.exec(file);
  if (!m) return null;
  const ext = m[1]!.toLowerCase();
  return ext === 'json' ? 'json' : ext === 'csv' ? 'csv' : 'yaml';
}

async function readStdin(max: number): Promise<Buffer | null> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of process.stdin as AsyncIterable<Buffer>) {
    size += c.length;
    if (size > max) return null;
    chunks.push(c);
  }
  return Buffer.concat(chunks);
}

/**
 * A file's text (`-`: stdin), read up to `max` bytes: a path that is no regular file (a FIFO, a
 * device, a directory) is refused rather than read forever, and one past `max` is `tooLarge`.
 */
export async function readText(path: string, max: number, what: string, tooLarge: ErrorCode): Promise<string> {
  let buf: Buffer | null;
  if (path === '-') {
    buf = await readStdin(max);
  } else {
    let fh;
    try {
      fh = await open(path, constants.O_RDONLY | constants.O_NONBLOCK);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') throw new BerthError('PATH_NOT_FOUND', `no file ${path}`, { details: { path } });
      throw new BerthError('INVALID_PARAMS', `cannot read ${path}: ${(err as Error).message}`, { details: { path } });
    }
    try {
      const st = await fh.stat();
      if (!st.isFile()) throw new BerthError('INVALID_PARAMS', `${path} is not a regular file`, { details: { path } });
      buf = st.size > max ? null : Buffer.alloc(max + 1);
      let n = 0;
      while (buf && n < buf.length) {
        const { bytesRead } = await fh.read(buf, n, buf.length - n, n);
        if (bytesRead === 0) break;
        n += bytesRead;
      }
      buf = buf && n <= max ? buf.subarray(0, n) : null;
    } finally {
      await fh.close();
    }
  }
  if (buf === null) throw new BerthError(tooLarge, `${what} ${path === '-' ? 'on stdin' : path} is larger than ${max} bytes`, { details: { path, limit: max } });
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(buf);
  } catch {
    throw new BerthError(tooLarge === 'TASKS_FILE_INVALID' ? 'TASKS_FILE_INVALID' : 'INVALID_PARAMS', `${what} ${path === '-' ? 'on stdin' : path} is not UTF-8 text`, { details: { path } });
  }
}

/** The session holding the task, by name. */
function holder(t: Task): string {
  return t.claim ? t.claim.sessionName || t.claim.session : '-';
}

/** `berth task ls`. */
export function taskTable(list: readonly Task[], noTrunc = false): string {
  return table(
    ['ID', 'PROJECT', 'STATE', 'PRIORITY', 'ATTEMPTS', 'DEPENDS ON', 'HELD BY', 'TITLE'],
    list.map((t) => [
      String(t.id),
      t.project,
      t.state,
      String(t.priority),
      `${t.attempts}/${t.maxAttempts}`,
      t.dependsOn.length ? cut(t.dependsOn.join(','), 24, noTrunc) : '-',
      holder(t),
      cut(t.title, 60, noTrunc),
    ]),
  );
}

/** Text of several lines under a heading, each line behind `  | `. */
function block(heading: string, text: string): string[] {
  return [heading, ...text.replace(/\n$/, '').split('\n').map((l) => line`  | ${l}`)];
}

/** `2026-12-02T10:00:00Z (5m ago)`. */
function when(iso: string, now: number): string {
  return `${iso.replace(/\.\d{3}Z$/, 'Z')} (${ago(iso, now)})`;
}

/** `berth task show`: everything about one task, its notes in order. */
export function taskText(t: Task, now = Date.now()): string {
  const out = [
    line`id          ${t.id}`,
    ...(t.key !== null ? [line`key         ${t.key}`] : []),
    line`project     ${t.project}`,
    line`title       ${t.title}`,
    line`state       ${t.state}`,
  ];
  if (t.claim) {
    const lease = `${t.claim.leaseUntil.replace(/\.\d{3}Z$/, 'Z')} (${until(t.claim.leaseUntil, now)})`;
    out.push(line`held by     ${t.claim.sessionName} (session ${t.claim.session}), attempt ${t.claim.attempt}, lease until ${lease}`);
  }
  out.push(
    line`attempts    ${t.attempts} of ${t.maxAttempts}`,
    line`priority    ${t.priority}`,
    line`labels      ${t.labels.length ? t.labels.join(', ') : '-'}`,
    line`depends on  ${t.dependsOn.length ? t.dependsOn.join(', ') : '-'}`,
    ...(t.pool !== null ? [line`pool        ${t.pool}`] : []),
    line`created     ${when(t.createdAt, now)}`,
    line`updated     ${when(t.updatedAt, now)}`,
  );
  if (t.result) {
    const r = t.result;
    out.push(line`result      branch ${r.branch ?? '-'}, commit ${r.commit ? r.commit.slice(0, 12) : '-'}${r.merged ? `, merged as ${r.merged.slice(0, 12)}` : ''}`);
    if (r.summary) out.push(...block('summary', r.summary));
  }
  if (t.notes.length) {
    out.push('notes');
    for (const n of t.notes) {
      out.push(line`  ${n.at.replace(/\.\d{3}Z$/, 'Z')}  attempt ${n.attempt}  ${n.kind}${n.session ? ` (session ${n.session})` : ''}`);
      if (n.text) out.push(...n.text.replace(/\n$/, '').split('\n').map((l) => line`    | ${l}`));
    }
  }
  if (t.body) out.push(...block('body', t.body));
  return `${out.join('\n')}\n`;
}

/** `added task 12 (open): Add a login form`, after add, update and cancel. */
export function taskLine(verb: string, t: Task): string {
  return line`${verb} task ${t.id} (${t.state}): ${t.title}` + '\n';
}

/** `berth task import`: the counts (`--json` has the tasks too). */
export function importText(r: TaskImportResult): string {
  return `${r.added} added, ${r.updated} updated, ${r.unchanged} unchanged (${r.tasks.length} in the file)\n`;
}

const counted = (p: Pool) => TASK_STATES.filter((s) => p.tasks[s] > 0).map((s) => `${p.tasks[s]} ${s}`);

/** `berth pool ls`. */
export function poolTable(list: readonly Pool[], now = Date.now()): string {
  return table(
    ['ID', 'PROJECT', 'AGENT', 'REVIEWER', 'STATE', 'WORKERS', 'TASKS', 'FINISHED', 'PER HOUR', 'TOKENS', 'CREATED'],
    list.map((p) => [
      p.id,
      p.project,
      p.agent,
      p.reviewer ?? '-',
      p.state,
      `${p.sessions.filter((s) => s.role === 'worker').length}/${p.parallel}`,
      counted(p).join(', ') || 'none',
      String(p.finished),
      String(p.perHour),
      humanTokens(p.tokens),
      ago(p.createdAt, now),
    ]),
  );
}

/** `berth pool show`: settings, the project's tasks by state, the pool's sessions, throughput. */
export function poolText(p: Pool, now = Date.now()): string {
  const flags = [p.autoMerge ? 'auto-merge' : '', p.untilEmpty ? 'until empty' : ''].filter(Boolean);
  const out = [
    line`pool        ${p.id}`,
    line`project     ${p.project}`,
    line`agent       ${p.agent}`,
    line`reviewer    ${p.reviewer ?? '-'}`,
    line`state       ${p.state}${flags.length ? ` (${flags.join(', ')})` : ''}`,
    line`parallel    ${p.parallel}`,
    line`finished    ${p.finished} (${p.perHour} an hour)`,
    line`tokens      ${humanTokens(p.tokens)}`,
    line`created     ${when(p.createdAt, now)}`,
    '',
    table(['STATE', 'TASKS'], TASK_STATES.map((s) => [s, String(p.tasks[s])])).trimEnd(),
    '',
    p.sessions.length ? table(['SESSION', 'NAME', 'ROLE', 'TASK', 'STATE'], p.sessions.map((s) => [s.id, s.name, s.role, String(s.task), s.state])).trimEnd() : 'no sessions',
  ];
  return `${out.join('\n')}\n`;
}
