import { lstat } from 'node:fs/promises';
import type { Stats } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { watch, type FSWatcher } from 'chokidar';
import { BerthError } from '@berth/client-sdk/protocol';
import { safeRead } from '../checkouts/safe-fs.js';
import type { EventBus } from '../events/bus.js';
import type { Logger } from '../log.js';
import { formatOf, MAX_TASK_FILE, parseTaskFile } from './file.js';
import type { TaskService } from './service.js';

/** The watched task file of a project, first found in this order. */
export const TASK_FILE_DIR = '.berth';
export const TASK_FILE_NAMES = ['tasks.yaml', 'tasks.yml', 'tasks.json'] as const;

const refused = (msg: string) => new BerthError('TASKS_FILE_INVALID', msg);

function kind(st: Stats): string {
  if (st.isSymbolicLink()) return 'a symbolic link';
  if (st.isDirectory()) return 'a directory';
  if (st.isFIFO()) return 'a FIFO';
  if (st.isSocket()) return 'a socket';
  if (st.isCharacterDevice() || st.isBlockDevice()) return 'a device';
  return 'not a regular file';
}

export type TaskFileRead = { file: string; format: 'yaml' | 'json'; text: string } | { file: string; error: BerthError };

/**
 * The project's `.berth/tasks.yaml` (or `.yml`, `.json`) as text, a refusal saying why it is not
 * read, or null when there is none. The file is in a repository agents write to, so it is hostile:
 * `.berth` and the file must be what they seem without following a link (lstat), the file a regular
 * one (a FIFO would block the read, a device never end), read by descriptor with O_NOFOLLOW and
 * O_NONBLOCK (safeRead) and never past MAX_TASK_FILE, and valid UTF-8.
 */
export async function readTaskFile(root: string): Promise<TaskFileRead | null> {
  const dir = join(root, TASK_FILE_DIR);
  const dst = await lstat(dir).catch(() => null);
  if (!dst) return null;
  if (!dst.isDirectory()) return { file: dir, error: refused(`${dir} is ${kind(dst)}; berth reads task files only from a real directory there`) };
  for (const name of TASK_FILE_NAMES) {
    const file = join(dir, name);
    const st = await lstat(file).catch(() => null);
    if (!st) continue;
    if (!st.isFile()) return { file, error: refused(`${file} is ${kind(st)}; berth reads only a regular file there`) };
    if (st.size > MAX_TASK_FILE) return { file, error: refused(`${file} is ${st.size} bytes; the limit is ${MAX_TASK_FILE}`) };
    const buf = await safeRead(root, `${TASK_FILE_DIR}/${name}`, MAX_TASK_FILE);
    if (!buf) return { file, error: refused(`${file} changed while it was read (replaced by a link or something else than a regular file, or grown past ${MAX_TASK_FILE} bytes)`) };
    let text: string;
    try {
      text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false }).decode(buf);
    } catch {
      return { file, error: refused(`${file} is not UTF-8 text`) };
    }
    return { file, format: formatOf(name) as 'yaml' | 'json', text };
  }
  return null;
}

export interface TaskFileWatcherDeps {
  /** The projects there are now (name and real path). */
  projects: () => readonly { name: string; path: string }[];
  tasks: Pick<TaskService, 'importEntries'>;
  bus: EventBus;
  log: Logger;
  /** Quiet time after the last change before the file is read (ms): an editor's save is several events. */
  debounceMs?: number;
  /**
   * How often `.berth` and the task files are looked at directly (lstat), as a backstop for
   * changes the file watcher did not report (inotify can miss some under load: a FIFO replaced by
   * a file). Default 10 s.
   */
  recheckMs?: number;
  /** The file watcher (chokidar's `watch`); a test gives one that sees nothing to try the backstop. */
  watch?: typeof watch;
}

interface Watched {
  name: string;
  root: string;
  watcher: FSWatcher;
  timer: NodeJS.Timeout | null;
  running: Promise<void> | null;
  again: boolean;
  closed: boolean;
  /** What `.berth` and the task files looked like when they were last read (`signature`). */
  seen: string | null;
}

/** Type, inode, size and mtime of `.berth` and each task file name: changes when any of them does. */
async function signature(root: string): Promise<string> {
  const dir = join(root, TASK_FILE_DIR);
  const parts: string[] = [];
  for (const p of [dir, ...TASK_FILE_NAMES.map((n) => join(dir, n))]) {
    const st = await lstat(p).catch(() => null);
    parts.push(st ? `${st.mode}:${st.ino}:${st.size}:${st.mtimeMs}` : '-');
  }
  return parts.join('|');
}

/**
 * Keeps each project's tasks in step with its `.berth/tasks.yaml` (or `.yml`, `.json`): on start,
 * when a project is added, and after each change to the file, its entries are added or updated by
 * key (TaskService.importEntries, all or nothing). A task whose entry leaves the file is left alone.
 * Every read ends in a `task.file` event: ok with the counts, or the error (a malformed file, or one
 * refused as hostile, changes nothing and is logged).
 */
export class TaskFileWatcher {
  private readonly watched = new Map<string, Watched>();
  private readonly debounceMs: number;

  constructor(private readonly d: TaskFileWatcherDeps) {
    this.debounceMs = d.debounceMs ?? 300;
  }

  async start(signal: AbortSignal): Promise<void> {
    if (signal.aborted) return;
    const off = this.d.bus.subscribe((e) => {
      if (e.type === 'project.added') this.watch(e.data.project.name, e.data.project.path);
      else if (e.type === 'project.removed') void this.unwatch(e.data.name);
    });
    for (const p of this.d.projects()) this.watch(p.name, p.path);
    this.d.log.info({ projects: this.watched.size }, 'Started watching task files');
    const recheckMs = this.d.recheckMs ?? 10_000;
    while (!signal.aborted) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(done, recheckMs);
        signal.addEventListener('abort', done, { once: true });
        function done() {
          clearTimeout(t);
          signal.removeEventListener('abort', done);
          resolve();
        }
      });
      for (const w of [...this.watched.values()]) {
        if (signal.aborted || w.closed || w.running || w.timer) continue;
        if ((await signature(w.root)) !== w.seen) this.poke(w);
      }
    }
    off();
    await Promise.all([...this.watched.keys()].map((name) => this.unwatch(name)));
  }

  /** Watches the project root without descending: only `.berth` and the task files in it are looked at. */
  private watch(name: string, root: string): void {
    if (this.watched.get(name)?.root === root) return;
    void this.unwatch(name);
    const dir = join(root, TASK_FILE_DIR);
    const relevant = (p: string) => p === root || p === dir || (dirname(p) === dir && (TASK_FILE_NAMES as readonly string[]).includes(basename(p)));
    const watcher = (this.d.watch ?? watch)(root, { ignoreInitial: true, followSymlinks: false, depth: 1, ignored: (p: string) => !relevant(p), ignorePermissionErrors: true });
    const w: Watched = { name, root, watcher, timer: null, running: null, again: false, closed: false, seen: null };
    watcher.on('all', (_event, p) => {
      if (p !== root) this.poke(w);
    });
    watcher.on('error', (err) => this.d.log.warn({ project: name, err: (err as Error).message }, `Failed watching ${dir}`));
    this.watched.set(name, w);
    // The file may have changed while berthd was down (or the project is new).
    this.run(w);
  }

  private async unwatch(name: string): Promise<void> {
    const w = this.watched.get(name);
    if (!w) return;
    this.watched.delete(name);
    w.closed = true;
    if (w.timer) clearTimeout(w.timer);
    await w.watcher.close().catch(() => {});
    await w.running;
  }

  private poke(w: Watched): void {
    if (w.closed) return;
    if (w.timer) clearTimeout(w.timer);
    w.timer = setTimeout(() => {
      w.timer = null;
      this.run(w);
    }, this.debounceMs);
  }

  /** One read at a time per project; a change during a read reads again after it. */
  private run(w: Watched): void {
    if (w.closed) return;
    if (w.running) {
      w.again = true;
      return;
    }
    w.running = this.sync(w).finally(() => {
      w.running = null;
      if (w.again) {
        w.again = false;
        this.run(w);
      }
    });
  }

  private async sync(w: Watched): Promise<void> {
    let read: TaskFileRead | null;
    w.seen = await signature(w.root);
    try {
      read = await readTaskFile(w.root);
    } catch (err) {
      read = { file: join(w.root, TASK_FILE_DIR), error: refused(`cannot read: ${(err as Error).message}`) };
    }
    if (!read || w.closed) return;
    const { file } = read;
    try {
      if ('error' in read) throw read.error;
      const r = this.d.tasks.importEntries(w.name, parseTaskFile(read.format, read.text));
      if (w.closed) return;
      if (r.added || r.updated) this.d.log.info({ project: w.name, file, added: r.added, updated: r.updated }, `Applied ${file}`);
      this.d.bus.publish('task.file', { project: w.name, file, ok: true, error: null, added: r.added, updated: r.updated });
    } catch (err) {
      // A project removed meanwhile has no tasks to keep in step.
      if (w.closed || (err instanceof BerthError && err.code === 'PROJECT_NOT_FOUND')) return;
      const error = err instanceof BerthError ? `${err.code}: ${err.message}` : `INTERNAL_ERROR: ${(err as Error).message}`;
      this.d.log.warn({ project: w.name, file, err: error }, `Failed applying ${file}; nothing changed`);
      this.d.bus.publish('task.file', { project: w.name, file, ok: false, error, added: 0, updated: 0 });
    }
  }
}
