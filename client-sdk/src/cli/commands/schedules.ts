import type { Command } from 'commander';
import { CONCURRENCY_POLICIES, type ParamsOf, type Schedule, type ScheduleRun } from '../../protocol/index.js';
import { oneOf, parseDurationSec, usageError, wholeNumber, type CliContext } from '../context.js';
import { ago, emit, ids, line, table, until } from '../output.js';

interface ScheduleFlags {
  cron?: string;
  tz?: string;
  project?: string;
  agent?: string;
  task?: string;
  command?: string;
  concurrency?: string;
  startingDeadline?: string;
  suspend?: boolean;
}

/** `--command 'shell text'` runs through sh -c; words after `--` are the argv itself. */
function commandOf(o: ScheduleFlags, argv: string[]): string[] | undefined {
  if (o.command !== undefined && argv.length) throw usageError('choose one of --command and a command after --');
  if (o.command !== undefined) return ['sh', '-c', o.command];
  return argv.length ? argv : undefined;
}

function fields(o: ScheduleFlags, argv: string[]): Omit<ParamsOf<'schedules.update'>, 'name'> {
  const command = commandOf(o, argv);
  return {
    ...(o.cron !== undefined ? { cron: o.cron } : {}),
    ...(o.tz !== undefined ? { tz: o.tz } : {}),
    ...(o.agent !== undefined ? { agent: o.agent } : {}),
    ...(command !== undefined ? { command } : {}),
    ...(o.task !== undefined ? { task: wholeNumber(o.task, '--task', 1) } : {}),
    ...(o.concurrency !== undefined ? { concurrency: oneOf(o.concurrency, '--concurrency', CONCURRENCY_POLICIES) } : {}),
    ...(o.startingDeadline !== undefined ? { startingDeadlineSec: parseDurationSec(o.startingDeadline, '--starting-deadline') } : {}),
  };
}

function options(cmd: Command): Command {
  return cmd
    .option('--tz <zone>', 'IANA time zone the expression is read in, like Europe/Berlin (default UTC)')
    .option('--task <id>', "hand each run this task of the project (its prompt in BERTH_TASK_PROMPT and the command's {{task.prompt}}; not claimed)")
    .option('--command <shell>', "run this shell command (sh -c) instead of the agent's command; or give the command's words after --")
    .option('--concurrency <policy>', `when the previous run still runs: ${CONCURRENCY_POLICIES.join(' | ')} (default forbid: skip this one)`)
    .option('--starting-deadline <duration>', 'a run berthd sees later than this (it was down) is recorded missed, not started (default 10m, at most 1d)');
}

function runLine(r: ScheduleRun): string[] {
  const final = r.final ? `${r.final.state}${r.final.exitCode !== null ? ` (${r.final.exitCode})` : ''}` : r.session ? 'running' : '-';
  return [r.scheduledAt.replace(/\.\d{3}Z$/, 'Z') + (r.manual ? ' (by hand)' : ''), r.outcome, r.session?.name ?? '-', final, r.reason ?? ''];
}

export function scheduleTable(list: readonly Schedule[], now = Date.now()): string {
  return table(
    ['NAME', 'PROJECT', 'AGENT', 'CRON', 'TZ', 'CONCURRENCY', 'ACTIVE', 'LAST', 'NEXT'],
    list.map((s) => [
      s.name,
      s.project,
      s.agent,
      s.cron,
      s.tz ?? 'UTC',
      s.concurrency,
      String(s.active.length),
      s.lastScheduledAt ? ago(s.lastScheduledAt, now) : '-',
      s.suspended ? 'suspended' : s.nextRunAt ? until(s.nextRunAt, now) : '-',
    ]),
  );
}

export function scheduleText(s: Schedule, now = Date.now()): string {
  const out = [
    line`schedule    ${s.name}`,
    line`project     ${s.project}`,
    line`agent       ${s.agent}`,
    line`cron        ${s.cron} (${s.tz ?? 'UTC'})`,
    line`command     ${s.command ? s.command.join(' ') : "the agent's"}`,
    line`task        ${s.task ?? '-'}`,
    line`concurrency ${s.concurrency}, starting deadline ${s.startingDeadlineSec}s`,
    line`state       ${s.suspended ? 'suspended' : 'active'}`,
    line`last        ${s.lastScheduledAt ?? '-'}`,
    line`next        ${s.suspended ? '-' : s.nextRunAt ? `${s.nextRunAt} (${until(s.nextRunAt, now)})` : 'never'}`,
    line`running     ${s.active.map((a) => a.name).join(', ') || '-'}`,
    '',
    s.history.length ? table(['SCHEDULED', 'OUTCOME', 'SESSION', 'FINAL', 'REASON'], s.history.map((r) => runLine(r).map((c) => line`${c}`))).trimEnd() : 'no runs yet',
  ];
  return `${out.join('\n')}\n`;
}

export function register(program: Command, { out, connect }: CliContext): void {
  const schedule = program.command('schedule').description('sessions started on a cron schedule (like Kubernetes CronJob)');

  options(
    schedule
      .command('add <name> [command...]')
      .description('start a session of AGENT on PROJECT at the times a cron expression names (sessions NAME-1, NAME-2, ...)')
      .requiredOption('--cron <expr>', 'five fields: minute hour day-of-month month day-of-week, as "0 3 * * 1-5"')
      .requiredOption('-p, --project <project>', 'the project each run works on')
      .requiredOption('-a, --agent <agent>', 'the agent each run runs')
      .option('--suspend', 'add it suspended (resume with `berth schedule update NAME --resume`)'),
  ).action(async (name: string, argv: string[], o: ScheduleFlags, cmd: Command) => {
    const s = await connect(cmd).schedules.add({ name, project: o.project!, agent: o.agent!, cron: o.cron!, ...fields({ ...o, cron: undefined, agent: undefined }, argv), ...(o.suspend ? { suspended: true } : {}) } as ParamsOf<'schedules.add'>);
    emit(out, s, () => line`added schedule ${s.name}: ${s.cron} (${s.tz ?? 'UTC'}), next run ${s.nextRunAt ?? '-'}` + '\n');
  });

  schedule
    .command('ls [project]')
    .alias('list')
    .description('list schedules')
    .option('-q, --quiet', 'only the names, one a line')
    .action(async (project: string | undefined, o: { quiet?: boolean }, cmd: Command) => {
      const list = await connect(cmd).schedules.list(project !== undefined ? { project } : {});
      if (o.quiet && !out.json) return out.print(ids(list.map((s) => s.name)));
      emit(out, list, () => (list.length ? scheduleTable(list) : 'no schedules (berth schedule add NAME --cron EXPR -p PROJECT -a AGENT adds one)\n'));
    });

  schedule
    .command('show <name>')
    .description('one schedule: its settings, next run, and its last runs with their sessions and outcomes')
    .action(async (name: string, _o, cmd: Command) => {
      const s = await connect(cmd).schedules.get({ name });
      emit(out, s, () => scheduleText(s));
    });

  options(
    schedule
      .command('update <name> [command...]')
      .description('change a schedule (a new --cron or --tz counts from now); --suspend / --resume pause it')
      .option('--cron <expr>', 'a new cron expression')
      .option('-a, --agent <agent>', 'another agent')
      .option('--no-tz', 'read the expression in UTC again')
      .option('--no-task', 'hand runs no task')
      .option('--agent-command', "run the agent's own command again")
      .option('--suspend', 'start no run until resumed')
      .option('--resume', 'start runs again (a time missed while suspended starts if within the starting deadline)'),
  ).action(async (name: string, argv: string[], o: Omit<ScheduleFlags, 'tz' | 'task'> & { tz?: string | false; task?: string | false; agentCommand?: boolean; resume?: boolean }, cmd: Command) => {
    if (o.suspend && o.resume) throw usageError('choose one of --suspend and --resume');
    const { tz, task, ...rest } = o;
    const p: ParamsOf<'schedules.update'> = {
      name,
      ...fields({ ...rest, ...(typeof tz === 'string' ? { tz } : {}), ...(typeof task === 'string' ? { task } : {}) }, argv),
      ...(tz === false ? { tz: null } : {}),
      ...(task === false ? { task: null } : {}),
      ...(o.agentCommand ? { command: null } : {}),
      ...(o.suspend ? { suspended: true } : o.resume ? { suspended: false } : {}),
    };
    const s = await connect(cmd).schedules.update(p);
    emit(out, s, () => line`schedule ${s.name}: ${s.cron} (${s.tz ?? 'UTC'}), ${s.suspended ? 'suspended' : `next run ${s.nextRunAt ?? '-'}`}` + '\n');
  });

  schedule
    .command('rm <name>')
    .alias('remove')
    .description('remove a schedule and its history (the sessions it started stay)')
    .action(async (name: string, _o, cmd: Command) => {
      const r = await connect(cmd).schedules.remove({ name });
      emit(out, r, () => line`removed schedule ${r.removed}` + '\n');
    });

  schedule
    .command('run <name>')
    .description('start a run now, by hand (its concurrency policy applies)')
    .action(async (name: string, _o, cmd: Command) => {
      const r = await connect(cmd).schedules.run({ name });
      emit(out, r, () => line`schedule ${name}: ${r.run.outcome}${r.run.session ? ` ${r.run.session.name}` : ''}${r.run.reason ? ` (${r.run.reason})` : ''}` + '\n');
    });
}
