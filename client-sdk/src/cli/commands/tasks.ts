import type { Command } from 'commander';
import { MAX_TASK_BODY, TASK_STATES, type ParamsOf, type Task } from '../../protocol/index.js';
import { collect, oneOf, usageError, wholeNumber, type CliContext } from '../context.js';
import { emit, ids, line } from '../output.js';
import { importText, MAX_IMPORT_FILE, poolTable, poolText, readText, taskFileFormat, taskLine, taskTable, taskText } from '../tasks.js';

/** What `task add` and `task update` share. */
interface TaskFlags {
  body?: string;
  bodyFile?: string;
  priority?: string;
  dependsOn: string[];
  label: string[];
  maxAttempts?: string;
}

const taskId = (text: string) => wholeNumber(text, 'the task id', 1);

/** `--depends-on 3 --depends-on 4,5`: ids, each once. */
function dependsOn(values: string[]): number[] {
  return [...new Set(values.flatMap((v) => v.split(',')).filter((v) => v.trim() !== '').map((v) => wholeNumber(v, '--depends-on', 1)))];
}

async function taskFields(o: TaskFlags): Promise<Omit<ParamsOf<'tasks.update'>, 'id' | 'title' | 'reopen'>> {
  if (o.body !== undefined && o.bodyFile !== undefined) throw usageError('choose one of --body and --body-file');
  const body = o.bodyFile !== undefined ? await readText(o.bodyFile, MAX_TASK_BODY, 'the body file', 'TASK_TOO_LARGE') : o.body;
  return {
    ...(body !== undefined ? { body } : {}),
    ...(o.priority !== undefined ? { priority: wholeNumber(o.priority, '--priority', -1_000_000, 1_000_000) } : {}),
    ...(o.dependsOn.length ? { dependsOn: dependsOn(o.dependsOn) } : {}),
    ...(o.label.length ? { labels: o.label } : {}),
    ...(o.maxAttempts !== undefined ? { maxAttempts: wholeNumber(o.maxAttempts, '--max-attempts', 1, 100) } : {}),
  };
}

function taskOptions(cmd: Command): Command {
  return cmd
    .option('--body <text>', 'what to do, in full (the agent gets it in its prompt and /host/task.json)')
    .option('--body-file <file>', "the body from a file ('-': stdin), at most 64 KiB")
    .option('--priority <n>', 'higher is claimed first (default 0)')
    .option('--depends-on <id>', 'claimed only once task ID is done (repeatable, or 3,4)', collect, [])
    .option('--label <label>', 'a label (repeatable)', collect, [])
    .option('--max-attempts <n>', 'attempts before the task fails (default 3)');
}

export function register(program: Command, { out, connect }: CliContext): void {
  const task = program.command('task').description('the backlog: tasks agents claim one at a time, under a lease (berth run works through them)');

  taskOptions(task.command('add <project> <title>').description('add a task to PROJECT')).action(
    async (project: string, title: string, o: TaskFlags, cmd: Command) => {
      const t = await connect(cmd).tasks.add({ project, title, ...(await taskFields(o)) });
      emit(out, t, () => taskLine('added', t));
    },
  );

  task
    .command('ls [project]')
    .alias('list')
    .description('list tasks, oldest first, a page at a time')
    .option('--state <state>', `only tasks in this state: ${TASK_STATES.join(', ')}`)
    .option('-n, --limit <n>', 'at most N tasks (default 100)')
    .option('--all', 'every task, page after page')
    .option('--cursor <cursor>', 'go on after the page that handed out this cursor')
    .option('-q, --quiet', 'only the ids, one a line')
    .option('--no-trunc', 'do not cut titles to the column')
    .action(async (project: string | undefined, o: { state?: string; limit?: string; all?: boolean; cursor?: string; quiet?: boolean; trunc: boolean }, cmd: Command) => {
      if (o.all && o.limit !== undefined) throw usageError('choose one of --limit and --all');
      const state = o.state !== undefined ? oneOf(o.state, '--state', TASK_STATES) : undefined;
      let left = o.limit !== undefined ? wholeNumber(o.limit, '--limit', 1) : 100;
      const c = connect(cmd);
      const items: Task[] = [];
      let cursor: string | null = o.cursor ?? null;
      do {
        const page = await c.tasks.list({
          ...(project !== undefined ? { project } : {}),
          ...(state ? { state } : {}),
          limit: o.all ? 1000 : Math.min(left, 1000),
          ...(cursor !== null ? { cursor } : {}),
        });
        items.push(...page.items);
        left -= page.items.length;
        cursor = page.nextCursor;
      } while (cursor !== null && (o.all || left > 0));
      if (out.json) return out.printJson({ items, nextCursor: cursor }, { pretty: true });
      if (o.quiet) out.print(ids(items.map((t) => String(t.id))));
      else out.print(items.length ? taskTable(items, !o.trunc) : project !== undefined ? line`no tasks in ${project}${state ? ` (${state})` : ''}` + '\n' : 'no tasks\n');
      if (cursor !== null) out.printErr(line`more tasks after these: --cursor ${cursor} goes on, --all lists them all` + '\n');
    });

  task
    .command('show <id>')
    .description('one task: its state, who holds it and until when, attempts, notes, result and body')
    .action(async (id: string, _o, cmd: Command) => {
      const t = await connect(cmd).tasks.get({ id: taskId(id) });
      emit(out, t, () => taskText(t));
    });

  taskOptions(
    task
      .command('update <id>')
      .description('change a task (labels and dependencies given are the new lists); --reopen a failed, cancelled or done one')
      .option('--title <title>', 'a new title'),
  )
    .option('--clear-labels', 'no labels')
    .option('--clear-depends', 'no dependencies')
    .option('--reopen', 'back to open, with its attempts afresh')
    .action(async (id: string, o: TaskFlags & { title?: string; clearLabels?: boolean; clearDepends?: boolean; reopen?: boolean }, cmd: Command) => {
      if (o.clearLabels && o.label.length) throw usageError('choose one of --label and --clear-labels');
      if (o.clearDepends && o.dependsOn.length) throw usageError('choose one of --depends-on and --clear-depends');
      const t = await connect(cmd).tasks.update({
        id: taskId(id),
        ...(o.title !== undefined ? { title: o.title } : {}),
        ...(await taskFields(o)),
        ...(o.clearLabels ? { labels: [] } : {}),
        ...(o.clearDepends ? { dependsOn: [] } : {}),
        ...(o.reopen ? { reopen: true } : {}),
      });
      emit(out, t, () => taskLine(o.reopen ? 'reopened' : 'updated', t));
    });

  task
    .command('cancel <id>')
    .description('cancel an open or claimed task (its holder loses it)')
    .action(async (id: string, _o, cmd: Command) => {
      const t = await connect(cmd).tasks.cancel({ id: taskId(id) });
      emit(out, t, () => taskLine('cancelled', t));
    });

  task
    .command('rm <id>')
    .alias('remove')
    .description('remove a task that is not claimed or in review (cancel it first)')
    .action(async (id: string, _o, cmd: Command) => {
      const r = await connect(cmd).tasks.remove({ id: taskId(id) });
      emit(out, r, () => `removed task ${r.removed}\n`);
    });

  task
    .command('import <project> <file>')
    .description('add or update tasks by key from a YAML, JSON or CSV file (all or nothing); tasks not in the file are left alone')
    .option('--format <format>', "yaml, json or csv (default: the file's extension; needed for '-', stdin)")
    .action(async (project: string, file: string, o: { format?: string }, cmd: Command) => {
      const format = o.format !== undefined ? oneOf(o.format, '--format', ['yaml', 'json', 'csv'] as const) : taskFileFormat(file);
      if (!format) throw usageError(line`cannot tell the format of ${file} from its name: give --format yaml|json|csv`);
      const text = await readText(file, MAX_IMPORT_FILE, 'the task file', 'TASKS_FILE_INVALID');
      const r = await connect(cmd).tasks.import({ project, format, text });
      emit(out, r, () => importText(r));
    });

  program
    .command('run <project>')
    .description("work through PROJECT's open tasks with a pool of sessions: one write session per task, on branch berth/task-ID")
    .requiredOption('-a, --agent <agent>', 'the agent each worker session runs')
    .option('--parallel <n>', 'sessions working at once (1-100)', '1')
    .option('--reviewer <agent>', 'a read session of this agent reviews each completed task (approve, or changes)')
    .option('--auto-merge', 'squash-merge each approved (or, without --reviewer, completed) task into the base branch')
    .option('--until-empty', 'stop once no task is open, claimed or in review')
    .option('--name <name>', 'the pool id (default PROJECT-pool)')
    .action(async (project: string, o: { agent: string; parallel: string; reviewer?: string; autoMerge?: boolean; untilEmpty?: boolean; name?: string }, cmd: Command) => {
      const p = await connect(cmd).pools.create({
        project,
        agent: o.agent,
        parallel: wholeNumber(o.parallel, '--parallel', 1, 100),
        ...(o.reviewer !== undefined ? { reviewer: o.reviewer } : {}),
        ...(o.autoMerge ? { autoMerge: true } : {}),
        ...(o.untilEmpty ? { untilEmpty: true } : {}),
        ...(o.name !== undefined ? { name: o.name } : {}),
      });
      emit(out, p, () => line`started pool ${p.id}: up to ${p.parallel} of ${p.agent} on ${p.project}${p.reviewer ? `, reviewed by ${p.reviewer}` : ''} (${p.tasks.open} open tasks); berth pool show ${p.id}` + '\n');
    });

  const pool = program.command('pool').description('pools of sessions working through a backlog (started by berth run)');
  pool
    .command('ls [project]')
    .alias('list')
    .description('list pools')
    .option('-q, --quiet', 'only the ids, one a line')
    .action(async (project: string | undefined, o: { quiet?: boolean }, cmd: Command) => {
      const list = await connect(cmd).pools.list(project !== undefined ? { project } : {});
      if (o.quiet && !out.json) return out.print(ids(list.map((p) => p.id)));
      emit(out, list, () => (list.length ? poolTable(list) : 'no pools (berth run PROJECT --agent A starts one)\n'));
    });
  pool
    .command('show <id>')
    .description("one pool: the project's tasks by state, the pool's sessions, throughput and tokens")
    .action(async (id: string, _o, cmd: Command) => {
      const p = await connect(cmd).pools.get({ id });
      emit(out, p, () => poolText(p));
    });
  pool
    .command('scale <id> <n>')
    .description('keep up to N sessions working')
    .action(async (id: string, n: string, _o, cmd: Command) => {
      const p = await connect(cmd).pools.scale({ id, parallel: wholeNumber(n, 'N', 1, 100) });
      emit(out, p, () => line`pool ${p.id}: up to ${p.parallel} sessions` + '\n');
    });
  pool
    .command('stop <id>')
    .description('stop the pool: its sessions now (their tasks go back to open), or with --graceful once they finish')
    .option('--graceful', 'start no new session; let those working finish their tasks')
    .action(async (id: string, o: { graceful?: boolean }, cmd: Command) => {
      const p = await connect(cmd).pools.stop({ id, ...(o.graceful ? { graceful: true } : {}) });
      emit(out, p, () => line`pool ${p.id} ${p.state}` + '\n');
    });
}
