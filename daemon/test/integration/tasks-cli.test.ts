import { spawn } from 'node:child_process';
import { mkdir, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BerthEvent, Pool, Task, TaskImportResult, TaskList } from '@berth/client-sdk';
import { BERTH_BIN, makeRepo, poll, sh, startWithProject, type DaemonProcess } from '../helpers/daemon.js';
import { TEST_IMAGE } from '../helpers/docker.js';

type FileEvent = Extract<BerthEvent, { type: 'task.file' }>['data'];

/** The real `berth` binary against a real berthd: tasks, their files, and the plumbing of pools. */
describe('berth task, the watched task file, berth run and berth pool', () => {
  let d: DaemonProcess;
  let repo: string;
  const files: FileEvent[] = [];
  const events = new AbortController();

  /** Runs the CLI, with `input` on its stdin; never throws (the exit code is in the result). */
  const berth = (args: string[], input?: string | Buffer) =>
    new Promise<{ code: number; stdout: string; stderr: string }>((resolve, reject) => {
      const p = spawn(process.execPath, [BERTH_BIN, '--socket', d.socket, ...args], { env: { PATH: process.env.PATH, HOME: d.home }, cwd: d.home });
      let stdout = '';
      let stderr = '';
      p.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
      p.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
      // The CLI stops reading once past its limit: the rest of the input is not wanted.
      p.stdin.on('error', () => {});
      p.stdin.end(input ?? '');
      p.on('error', reject);
      p.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
    });
  /** `berth --json ...` that must succeed: its parsed output. */
  const json = async <T>(...args: string[]): Promise<T> => {
    const r = await berth(['--json', ...args]);
    expect(r.code, `berth ${args.join(' ')}: ${r.stderr}`).toBe(0);
    return JSON.parse(r.stdout) as T;
  };
  /** `berth --json ...` that must fail: exit 1 and the error code. */
  const refused = async (args: string[], input?: string | Buffer): Promise<string> => {
    const r = await berth(['--json', ...args], input);
    expect(r.code, `berth ${args.join(' ')}: ${r.stdout}`).toBe(1);
    expect(r.stdout).toBe('');
    return (JSON.parse(r.stderr) as { error: { code: string } }).error.code;
  };
  const all = async (project: string) => (await json<TaskList>('task', 'ls', project, '--all')).items;
  const addProject = async (name: string) => {
    const path = await makeRepo(join(d.home, 'projects', name));
    expect((await berth(['project', 'add', name, path])).code).toBe(0);
    return path;
  };

  beforeAll(async () => {
    ({ d, repo } = await startWithProject({}, 'web'));
    // From the start of berthd's buffer, so no event is missed however late the stream connects.
    void (async () => {
      for await (const e of d.client.events({ since: 0, types: ['task.file'], signal: events.signal })) {
        if (e.type === 'task.file') files.push(e.data);
      }
    })().catch(() => {});
  });
  afterAll(async () => {
    events.abort();
    await d?.[Symbol.asyncDispose]();
  });

  it('task add | ls | show | update | cancel | rm', async () => {
    const bodyFile = join(d.home, 'body.md');
    await writeFile(bodyFile, 'Use the existing session cookie.\nAdd a test.\n');
    const a = await json<Task>('task', 'add', 'web', 'Design the schema', '--priority', '5', '--label', 'db', '--label', 'design');
    expect(a).toMatchObject({ project: 'web', title: 'Design the schema', priority: 5, labels: ['db', 'design'], state: 'open', attempts: 0, maxAttempts: 3, key: null });
    const b = await json<Task>('task', 'add', 'web', 'Add a login form', '--body-file', bodyFile, '--depends-on', String(a.id), '--max-attempts', '2', '--priority', '-1');
    expect(b).toMatchObject({ body: 'Use the existing session cookie.\nAdd a test.\n', dependsOn: [a.id], maxAttempts: 2, priority: -1 });
    const c = await json<Task>('task', 'add', 'web', 'Write docs', '--body-file', '-');
    expect(c.body).toBe('');
    const piped = await berth(['task', 'add', 'web', 'From stdin', '--body-file', '-'], 'piped body');
    expect(piped.code, piped.stderr).toBe(0);
    expect(piped.stdout).toMatch(/^added task \d+ \(open\): From stdin\n$/);

    expect(await refused(['task', 'add', 'web', 'Orphan', '--depends-on', '999999'])).toBe('TASK_DEPENDENCY_INVALID');
    expect(await refused(['task', 'add', 'ghost', 'Nowhere'])).toBe('PROJECT_NOT_FOUND');
    // A body past 64 KiB (10 MB here) is refused, without reading all of it.
    expect(await refused(['task', 'add', 'web', 'Huge', '--body-file', '-'], Buffer.alloc(10 * 1024 * 1024, 'x'))).toBe('TASK_TOO_LARGE');
    expect(await refused(['task', 'add', 'web', 'x'.repeat(501)])).toBe('TASK_TOO_LARGE');

    const ls = await berth(['task', 'ls', 'web']);
    expect(ls.code).toBe(0);
    expect(ls.stdout).toMatch(/^ID\s+PROJECT\s+STATE\s+PRIORITY\s+ATTEMPTS\s+DEPENDS ON\s+HELD BY\s+TITLE\n/);
    expect(ls.stdout).toMatch(new RegExp(`\\n${a.id}\\s+web\\s+open\\s+5\\s+0/3\\s+-\\s+-\\s+Design the schema\\n`));
    expect(ls.stdout).toMatch(new RegExp(`\\n${b.id}\\s+web\\s+open\\s+-1\\s+0/2\\s+${a.id}\\s+-\\s+Add a login form\\n`));
    expect((await berth(['task', 'ls', 'web', '-q'])).stdout.split('\n').filter(Boolean).map(Number)).toEqual((await all('web')).map((t) => t.id));
    expect((await json<TaskList>('task', 'ls', 'web', '--state', 'cancelled')).items).toEqual([]);

    // A page at a time: the cursor goes on where the page stopped.
    const first = await json<TaskList>('task', 'ls', 'web', '--limit', '2');
    expect(first.items.map((t) => t.id)).toEqual([a.id, b.id]);
    expect(first.nextCursor).not.toBeNull();
    const rest = await json<TaskList>('task', 'ls', 'web', '--cursor', first.nextCursor!);
    expect(rest).toEqual({ items: [expect.objectContaining({ id: c.id }), expect.objectContaining({ title: 'From stdin' })], nextCursor: null });
    const human = await berth(['task', 'ls', 'web', '--limit', '1']);
    expect(human.stdout.trimEnd().split('\n')).toHaveLength(2);
    expect(human.stderr).toMatch(/--cursor \S+ goes on/);
    expect(await all('web')).toHaveLength(4);

    const show = await berth(['task', 'show', String(b.id)]);
    expect(show.code).toBe(0);
    expect(show.stdout).toContain(`id          ${b.id}\n`);
    expect(show.stdout).toContain('title       Add a login form\n');
    expect(show.stdout).toContain(`depends on  ${a.id}\n`);
    expect(show.stdout).toContain('attempts    0 of 2\n');
    expect(show.stdout).toContain('body\n  | Use the existing session cookie.\n  | Add a test.\n');
    expect(await json<Task>('task', 'show', String(b.id))).toEqual(b);
    expect(await refused(['task', 'show', '999999'])).toBe('TASK_NOT_FOUND');

    const u = await json<Task>('task', 'update', String(b.id), '--title', 'Add a sign-in form', '--priority', '7', '--label', 'ui', '--body', 'New body');
    expect(u).toMatchObject({ title: 'Add a sign-in form', priority: 7, labels: ['ui'], body: 'New body', dependsOn: [a.id] });
    // b depends on a: a depending on b would be a cycle.
    expect(await refused(['task', 'update', String(a.id), '--depends-on', String(b.id)])).toBe('TASK_DEPENDENCY_INVALID');
    expect(await json<Task>('task', 'update', String(b.id), '--clear-depends', '--clear-labels')).toMatchObject({ dependsOn: [], labels: [] });
    expect(await refused(['task', 'update', String(a.id), '--reopen'])).toBe('TASK_STATE');

    const cancelled = await berth(['task', 'cancel', String(a.id)]);
    expect(cancelled.stdout).toBe(`cancelled task ${a.id} (cancelled): Design the schema\n`);
    expect(await refused(['task', 'cancel', String(a.id)])).toBe('TASK_STATE');
    expect(await json<Task>('task', 'update', String(a.id), '--reopen')).toMatchObject({ state: 'open', attempts: 0 });

    expect((await berth(['task', 'rm', String(c.id)])).stdout).toBe(`removed task ${c.id}\n`);
    expect(await refused(['task', 'show', String(c.id)])).toBe('TASK_NOT_FOUND');
    expect(await refused(['task', 'rm', String(c.id)])).toBe('TASK_NOT_FOUND');

    // Shell completion offers the ids of tasks still to be done.
    const offered = (await berth(['__complete', 'task'])).stdout.split('\n').filter(Boolean).map(Number);
    expect(offered).toEqual(expect.arrayContaining([a.id, b.id]));
    expect(offered).not.toContain(c.id);
  });

  it('task import from YAML, JSON and CSV by key; a malformed file changes nothing and exits 1 with its code', async () => {
    await addProject('imports');
    const dir = join(d.home, 'import');
    await mkdir(dir);
    await writeFile(
      join(dir, 'backlog.yaml'),
      `tasks:
  - key: schema
    title: Design the schema
    priority: 5
    labels: [db]
  - key: api
    title: Write the API
    dependsOn: [schema]
    body: |
      REST, JSON.
`,
    );
    const y = await json<TaskImportResult>('task', 'import', 'imports', join(dir, 'backlog.yaml'));
    expect(y).toMatchObject({ added: 2, updated: 0, unchanged: 0 });
    const [schema, api] = y.tasks;
    expect(schema).toMatchObject({ key: 'schema', priority: 5, labels: ['db'], dependsOn: [] });
    expect(api).toMatchObject({ key: 'api', body: 'REST, JSON.\n', dependsOn: [schema!.id] });

    await writeFile(
      join(dir, 'backlog.json'),
      JSON.stringify([
        { key: 'schema', title: 'Design the schema', priority: 5, labels: ['db'] },
        { key: 'api', title: 'Write the REST API', dependsOn: ['schema'], body: 'REST, JSON.\n' },
        { key: 'ui', title: 'Build the UI', dependsOn: ['api'] },
      ]),
    );
    const j = await berth(['task', 'import', 'imports', join(dir, 'backlog.json')]);
    expect(j.code, j.stderr).toBe(0);
    expect(j.stdout).toBe('1 added, 1 updated, 1 unchanged (3 in the file)\n');

    await writeFile(join(dir, 'more.csv'), 'key,title,priority,labels,dependsOn\ndocs,Write the docs,2,"docs;writing","api,ui"\n');
    const csv = await json<TaskImportResult>('task', 'import', 'imports', join(dir, 'more.csv'));
    expect(csv).toMatchObject({ added: 1, updated: 0, unchanged: 0 });
    const ids = new Map((await all('imports')).map((t) => [t.key, t.id]));
    expect(csv.tasks[0]).toMatchObject({ key: 'docs', priority: 2, labels: ['docs', 'writing'], dependsOn: [ids.get('api'), ids.get('ui')] });

    // The same text on stdin, the format given.
    const piped = await berth(['--json', 'task', 'import', 'imports', '-', '--format', 'csv'], 'key,title\nstdin,From stdin\n');
    expect(piped.code, piped.stderr).toBe(0);
    expect(JSON.parse(piped.stdout)).toMatchObject({ added: 1 });

    const before = await all('imports');
    // Each malformed in its own way; none changes anything, not even its valid entries.
    const bad = {
      'unknown-field.yaml': '- {key: fresh, title: Fresh}\n- {key: x, title: X, owner: me}\n',
      'duplicate-key.json': JSON.stringify([{ key: 'fresh', title: 'Fresh' }, { key: 'fresh', title: 'Again' }]),
      'bad-key.csv': 'key,title\nfresh,Fresh\n../etc,Escape\n',
      'unknown-dependency.yaml': '- {key: fresh, title: Fresh, dependsOn: [nowhere]}\n',
      'cycle.yaml': '- {key: schema, title: Design the schema, dependsOn: [docs]}\n',
      'not-json.json': '[{"key": "fresh",',
    };
    for (const [name, text] of Object.entries(bad)) {
      await writeFile(join(dir, name), text);
      expect(await refused(['task', 'import', 'imports', join(dir, name)]), name).toBe('TASKS_FILE_INVALID');
    }
    const human = await berth(['task', 'import', 'imports', join(dir, 'unknown-field.yaml')]);
    expect(human.stderr).toMatch(/^error\[TASKS_FILE_INVALID\]: entry 2: /);
    await writeFile(join(dir, 'big.yaml'), `# ${'x'.repeat(1024 * 1024)}\n`);
    expect(await refused(['task', 'import', 'imports', join(dir, 'big.yaml')])).toBe('TASKS_FILE_INVALID');
    expect(await refused(['task', 'import', 'imports', join(dir, 'missing.yaml')])).toBe('PATH_NOT_FOUND');
    expect(await refused(['task', 'import', 'ghost', join(dir, 'backlog.yaml')])).toBe('PROJECT_NOT_FOUND');
    expect(await all('imports')).toEqual(before);
  });

  it('the watched .berth/tasks.yaml: created, edited, broken, fixed; an entry taken out is left alone; a link is refused', async () => {
    const path = await addProject('watched');
    const mine = (from: number) => files.slice(from).filter((e) => e.project === 'watched');
    /** Waits for a task.file event about `watched` after the `from` seen before, that matches. */
    const next = (from: number, match: (e: FileEvent) => boolean, what: string) => poll(async () => mine(from).find(match), 20_000, what);
    // As an editor saves: the whole file at once (a rename), so no half-written file is read.
    const save = async (name: string, text: string) => {
      await writeFile(join(path, '.berth', '.save.tmp'), text);
      await rename(join(path, '.berth', '.save.tmp'), join(path, '.berth', name));
    };
    await mkdir(join(path, '.berth'));
    const file = join(path, '.berth', 'tasks.yaml');

    let from = files.length;
    await save('tasks.yaml', '- key: one\n  title: First\n- key: two\n  title: Second\n  dependsOn: [one]\n');
    expect(await next(from, (e) => e.ok, 'the file applied')).toEqual({ project: 'watched', file, ok: true, error: null, added: 2, updated: 0 });
    const made = await all('watched');
    expect(made.map((t) => [t.key, t.title])).toEqual([['one', 'First'], ['two', 'Second']]);
    expect(made[1]!.dependsOn).toEqual([made[0]!.id]);

    from = files.length;
    await save('tasks.yaml', '- key: one\n  title: First, renamed\n- key: two\n  title: Second\n  dependsOn: [one]\n');
    expect(await next(from, (e) => e.ok && e.updated > 0, 'the edit applied')).toMatchObject({ added: 0, updated: 1 });
    expect((await all('watched')).map((t) => t.title)).toEqual(['First, renamed', 'Second']);

    const before = await all('watched');
    from = files.length;
    await save('tasks.yaml', '- key: one\n  title: First, broken\n  assignee: me\n- key: three\n  title: Third\n');
    const broken = await next(from, (e) => !e.ok, 'the malformed file reported');
    expect(broken).toMatchObject({ file, ok: false, added: 0, updated: 0 });
    expect(broken.error).toMatch(/^TASKS_FILE_INVALID\b/);
    expect(await all('watched')).toEqual(before);
    await d.waitForLog(/Failed applying .*tasks\.yaml; nothing changed/);

    // Fixed, with `two` taken out of the file: `three` is added, `two` stays as it was.
    from = files.length;
    await save('tasks.yaml', '- key: one\n  title: First, renamed\n- key: three\n  title: Third\n');
    expect(await next(from, (e) => e.ok && e.added > 0, 'the fixed file applied')).toMatchObject({ added: 1, updated: 0 });
    expect((await all('watched')).map((t) => t.key)).toEqual(['one', 'two', 'three']);

    // A link (here to a file outside the repository) is never read.
    const outside = join(d.home, 'outside.yaml');
    await writeFile(outside, '- key: stolen\n  title: Stolen\n');
    from = files.length;
    await rm(file);
    await symlink(outside, file);
    const link = await next(from, (e) => !e.ok, 'the link refused');
    expect(link).toMatchObject({ file, ok: false });
    expect(link.error).toMatch(/^TASKS_FILE_INVALID\b/);
    expect((await all('watched')).map((t) => t.key)).toEqual(['one', 'two', 'three']);
  });

  it('berth run, pool ls | show | scale | stop: the CLI over pools.*', async () => {
    await addProject('pooled');
    expect((await berth(['agent', 'add', 'worker', '--image', TEST_IMAGE, '--', ...sh('sleep 3600')])).code).toBe(0);
    for (const title of ['One', 'Two']) await json<Task>('task', 'add', 'pooled', title);

    expect(await refused(['run', 'pooled', '--agent', 'nobody'])).toBe('AGENT_NOT_FOUND');
    expect(await refused(['run', 'ghost', '--agent', 'worker'])).toBe('PROJECT_NOT_FOUND');
    const started = await berth(['run', 'pooled', '--agent', 'worker', '--parallel', '1', '--until-empty']);
    expect(started.code, started.stderr).toBe(0);
    expect(started.stdout).toBe('started pool pooled-pool: up to 1 of worker on pooled (2 open tasks); berth pool show pooled-pool\n');
    expect(await refused(['run', 'pooled', '--agent', 'worker'])).toBe('POOL_EXISTS');

    const ls = await berth(['pool', 'ls']);
    expect(ls.stdout).toMatch(/^ID\s+PROJECT\s+AGENT\s+REVIEWER\s+STATE\s+WORKERS\s+TASKS\s+FINISHED\s+PER HOUR\s+TOKENS\s+CREATED\npooled-pool\s+pooled\s+worker\s+-\s+running\s+\d\/1\s+/);
    expect((await json<Pool[]>('pool', 'ls', 'pooled')).map((p) => p.id)).toEqual(['pooled-pool']);
    expect(await json<Pool[]>('pool', 'ls', 'web')).toEqual([]);
    expect((await berth(['pool', 'ls', '-q'])).stdout).toBe('pooled-pool\n');
    expect((await berth(['__complete', 'pool'])).stdout).toBe('pooled-pool\n');

    // The pool starts a worker for a task: show lists it with its role, task and state.
    const working = await poll(async () => (await json<Pool>('pool', 'show', 'pooled-pool')).sessions.find((s) => s.role === 'worker'), 60_000, 'a worker session');
    const show = await berth(['pool', 'show', 'pooled-pool']);
    expect(show.stdout).toContain('pool        pooled-pool\n');
    expect(show.stdout).toContain('state       running (until empty)\n');
    expect(show.stdout).toMatch(/\nSTATE\s+TASKS\nopen\s+\d\nclaimed\s+\d\n/);
    expect(show.stdout).toMatch(new RegExp(`\\nSESSION\\s+NAME\\s+ROLE\\s+TASK\\s+STATE\\n${working.id}\\s+${working.name}\\s+worker\\s+${working.task}\\s+`));
    expect(await refused(['pool', 'show', 'ghost'])).toBe('POOL_NOT_FOUND');

    const scaled = await berth(['pool', 'scale', 'pooled-pool', '2']);
    expect(scaled.stdout).toBe('pool pooled-pool: up to 2 sessions\n');
    expect((await json<Pool>('pool', 'show', 'pooled-pool')).parallel).toBe(2);
    expect(await refused(['pool', 'scale', 'ghost', '2'])).toBe('POOL_NOT_FOUND');

    const stopped = await berth(['pool', 'stop', 'pooled-pool']);
    expect(stopped.stdout).toBe('pool pooled-pool stopped\n');
    expect(await refused(['pool', 'scale', 'pooled-pool', '3'])).toBe('POOL_EXISTS');
  });
});
