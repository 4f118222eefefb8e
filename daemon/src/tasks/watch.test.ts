import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { watch } from 'chokidar';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { BerthEvent, TaskFileEntry } from '@berth/client-sdk/protocol';
import { EventBus } from '../events/bus.js';
import { MAX_TASK_FILE } from './file.js';
import { readTaskFile, TaskFileWatcher } from './watch.js';

type FileEvent = Extract<BerthEvent, { type: 'task.file' }>['data'];

describe('the watched task file', () => {
  let root: string;
  let other: string;
  let bus: EventBus;
  let ctl: AbortController;
  let done: Promise<void>;
  let imports: { project: string; entries: readonly TaskFileEntry[] }[];
  let events: FileEvent[];
  let projects: { name: string; path: string }[];

  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), 'bt-watch-'));
    other = await mkdtemp(join(tmpdir(), 'bt-watch-'));
    bus = new EventBus();
    imports = [];
    events = [];
    projects = [{ name: 'web', path: root }];
    bus.subscribe((e) => {
      if (e.type === 'task.file') events.push(e.data);
    });
  });
  afterEach(async () => {
    ctl?.abort();
    await done;
    await rm(root, { recursive: true, force: true });
    await rm(other, { recursive: true, force: true });
  });

  const start = () => {
    ctl = new AbortController();
    const w = new TaskFileWatcher({
      projects: () => projects,
      tasks: {
        importEntries: (project, entries) => {
          imports.push({ project, entries });
          return { added: entries.length, updated: 0, unchanged: 0, tasks: [] };
        },
      },
      bus,
      log: pino({ level: 'silent' }),
      debounceMs: 50,
    });
    done = w.start(ctl.signal);
  };

  /** The next task.file event after the `n` seen so far (a deadline only for a hang). */
  const event = async (n: number): Promise<FileEvent> => {
    const deadline = Date.now() + 20_000 * (Number(process.env.BERTH_TEST_SLACK) || 3);
    while (events.length <= n) {
      if (Date.now() > deadline) throw new Error(`no task.file event #${n + 1}; got ${JSON.stringify(events)}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    return events[n]!;
  };

  const tasksYaml = (...keys: string[]) => keys.map((k) => `- key: ${k}\n  title: Task ${k}\n`).join('');

  it('reads the file at start, then after each change, adding and updating by key', async () => {
    await mkdir(join(root, '.berth'));
    await writeFile(join(root, '.berth', 'tasks.yaml'), tasksYaml('a', 'b'));
    start();
    expect(await event(0)).toEqual({ project: 'web', file: join(root, '.berth', 'tasks.yaml'), ok: true, error: null, added: 2, updated: 0 });
    expect(imports[0]!.entries.map((e) => e.key)).toEqual(['a', 'b']);

    await writeFile(join(root, '.berth', 'tasks.yaml'), tasksYaml('a', 'b', 'c'));
    expect(await event(1)).toMatchObject({ ok: true, added: 3 });
    expect(imports.at(-1)!.entries.map((e) => e.key)).toEqual(['a', 'b', 'c']);
  });

  it('notices .berth and the file made after it started; .json as well as .yaml', async () => {
    start();
    await new Promise((r) => setTimeout(r, 200));
    expect(events).toEqual([]);
    await mkdir(join(root, '.berth'));
    await writeFile(join(root, '.berth', 'tasks.json'), JSON.stringify([{ key: 'j', title: 'from JSON' }]));
    expect(await event(0)).toMatchObject({ ok: true, file: join(root, '.berth', 'tasks.json'), added: 1 });
  });

  it('a malformed file changes nothing and says why; fixed again, it is applied', async () => {
    await mkdir(join(root, '.berth'));
    await writeFile(join(root, '.berth', 'tasks.yaml'), tasksYaml('a'));
    start();
    await event(0);
    await writeFile(join(root, '.berth', 'tasks.yaml'), '- key: a\n  title: A\n  owner: me\n');
    const bad = await event(1);
    expect(bad).toMatchObject({ ok: false, added: 0, updated: 0 });
    expect(bad.error).toMatch(/^TASKS_FILE_INVALID\b/);
    expect(imports).toHaveLength(1);
    await writeFile(join(root, '.berth', 'tasks.yaml'), tasksYaml('a', 'b'));
    expect(await event(2)).toMatchObject({ ok: true, added: 2 });
  });

  it('refuses a link, a FIFO, a directory and a file past the limit, without reading them', async () => {
    await mkdir(join(root, '.berth'));
    const file = join(root, '.berth', 'tasks.yaml');
    await writeFile(join(other, 'secret.yaml'), tasksYaml('stolen'));
    await symlink(join(other, 'secret.yaml'), file);
    start();
    expect(await event(0)).toMatchObject({ ok: false, file, error: expect.stringMatching(/^TASKS_FILE_INVALID\b/) });

    await rm(file);
    execFileSync('mkfifo', [file]);
    expect(await event(1)).toMatchObject({ ok: false, file });

    await rm(file);
    await writeFile(file, `# ${'x'.repeat(MAX_TASK_FILE)}\n`);
    expect(await event(2)).toMatchObject({ ok: false, file });
    expect(imports).toEqual([]);
  });

  it('picks up a change the file watcher did not report, by looking again every recheckMs', async () => {
    ctl = new AbortController();
    // A real chokidar watcher on a directory that does not exist: it reports nothing.
    const w = new TaskFileWatcher({
      projects: () => projects,
      tasks: { importEntries: (project, entries) => (imports.push({ project, entries }), { added: entries.length, updated: 0, unchanged: 0, tasks: [] }) },
      bus,
      log: pino({ level: 'silent' }),
      debounceMs: 20,
      recheckMs: 50,
      watch: (_root, opts) => watch(join(other, 'never-made'), opts),
    });
    done = w.start(ctl.signal);
    await new Promise((r) => setTimeout(r, 150));
    expect(events).toEqual([]);
    await mkdir(join(root, '.berth'));
    await writeFile(join(root, '.berth', 'tasks.yaml'), tasksYaml('a'));
    expect(await event(0)).toMatchObject({ ok: true, added: 1 });
    await writeFile(join(root, '.berth', 'tasks.yaml'), tasksYaml('a', 'b'));
    expect(await event(1)).toMatchObject({ ok: true, added: 2 });
    // Unchanged: looking again reads nothing more.
    await new Promise((r) => setTimeout(r, 300));
    expect(events).toHaveLength(2);
  });

  it('refuses a .berth that is a link to a directory elsewhere', async () => {
    await writeFile(join(other, 'tasks.yaml'), tasksYaml('stolen'));
    await symlink(other, join(root, '.berth'));
    start();
    expect(await event(0)).toMatchObject({ ok: false, file: join(root, '.berth') });
    expect(imports).toEqual([]);
    expect(await readTaskFile(root)).toMatchObject({ error: { code: 'TASKS_FILE_INVALID' } });
  });

  it('refuses a file that is not UTF-8', async () => {
    await mkdir(join(root, '.berth'));
    await writeFile(join(root, '.berth', 'tasks.yaml'), Buffer.from([0x2d, 0x20, 0xff, 0xfe, 0x0a]));
    expect(await readTaskFile(root)).toMatchObject({ error: { code: 'TASKS_FILE_INVALID' } });
  });

  it('watches projects as they are added, and stops with those removed', async () => {
    start();
    await mkdir(join(other, '.berth'));
    await writeFile(join(other, '.berth', 'tasks.yml'), tasksYaml('x'));
    projects = [...projects, { name: 'api', path: other }];
    bus.publish('project.added', { project: { name: 'api', path: other } as never });
    expect(await event(0)).toMatchObject({ project: 'api', ok: true, added: 1 });

    bus.publish('project.removed', { name: 'api' });
    await writeFile(join(other, '.berth', 'tasks.yml'), tasksYaml('x', 'y'));
    await new Promise((r) => setTimeout(r, 500));
    expect(events).toHaveLength(1);
  });
});
