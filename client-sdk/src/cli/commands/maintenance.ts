import { spawn } from 'node:child_process';
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { BerthError, type DiskUse, type MaintenanceJobStatus, type MaintenanceRun } from '../../protocol/index.js';
import { ExitCode, type CliContext } from '../context.js';
import { ago, emit, line, table, until } from '../output.js';

/** `1.5 GiB`: bytes for people. */
export function bytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${n} B` : `${v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
}

/** A run in one line: `ok 2m ago (path=…, bytes=…)` or `FAILED 2m ago: cause`. */
export function runText(r: MaintenanceRun | null): string {
  if (!r) return 'never';
  if (!r.ok) return line`FAILED ${ago(r.finishedAt)}: ${r.error ?? ''}`;
  const facts = Object.entries(r.summary ?? {})
    .filter(([, v]) => typeof v === 'number' || typeof v === 'string')
    .map(([k, v]) => `${k}=${typeof v === 'number' && k === 'bytes' ? bytes(v) : String(v)}`);
  return line`ok ${ago(r.finishedAt)}${facts.length ? ` (${facts.join(', ')})` : ''}`;
}

/** The lines `berth status` shows for maintenance and disk use. */
export function maintenanceLines(jobs: MaintenanceJobStatus[], disk: DiskUse | null): string[] {
  const out = ['maintenance'];
  for (const j of jobs) {
    const next = j.nextRunAt ? `next ${until(j.nextRunAt)}` : j.cron === 'off' ? 'off' : '';
    out.push(`  ${j.job.padEnd(10)} ${j.running ? 'running now' : runText(j.lastRun)}${next ? `; ${next}` : ''}`);
  }
  if (disk) {
    const kinds = (['db', 'backups', 'logs', 'checkouts', 'repos', 'other'] as const).map((k) => `${k} ${bytes(disk[k])}`);
    out.push(`disk     ${bytes(disk.total)} (${kinds.join(', ')})`);
  } else out.push('disk     (being measured)');
  return out;
}

export function register(program: Command, { out, connect }: CliContext): void {
  const maintenance = program.command('maintenance').description('berthd\'s own upkeep: backups, pruning, dangling images, checkout repairs');
  maintenance
    .command('ls')
    .description('each job: its schedule, last run and next run')
    .action(async (_o, cmd: Command) => {
      const jobs = await connect(cmd).maintenance.list();
      emit(out, jobs, () =>
        table(
          ['JOB', 'SCHEDULE', 'LAST RUN', 'NEXT RUN'],
          jobs.map((j) => [j.job, j.cron, j.running ? 'running now' : runText(j.lastRun), j.nextRunAt ? until(j.nextRunAt) : '-']),
        ),
      );
    });
  maintenance
    .command('run <job>')
    .description('run a job now (backup, prune, images, checkouts) and print what it did')
    .action(async (job: string, _o, cmd: Command) => {
      const run = await connect(cmd).maintenance.run({ job });
      emit(out, run, () => `${job}: ${runText(run)}\n${run.summary ? `${JSON.stringify(run.summary, null, 2)}\n` : ''}`);
      if (!run.ok) throw new ExitCode(1);
    });

  program
    .command('backup')
    .description('back up berthd\'s state database now (online) and print the path')
    .option('--to <name>', 'name the copy (must not exist) in $BERTH_HOME/backups/ (not rotated); berthd writes nowhere else')
    .action(async (o: { to?: string }, cmd: Command) => {
      const r = await connect(cmd).maintenance.backup(o.to !== undefined ? { to: o.to.includes('/') ? resolve(o.to) : o.to } : {});
      emit(out, r, () => `${r.path}\n`);
    });

  program
    .command('restore <file>')
    .description('put a backup in place of the state database (berthd must be stopped; runs `berthd --restore FILE`)')
    .action(async (file: string, _o, cmd: Command) => {
      const client = connect(cmd);
      const running = await client.daemon.status().then(
        () => true,
        (err: unknown) => {
          if (err instanceof BerthError && err.code === 'DAEMON_UNREACHABLE') return false;
          throw err;
        },
      );
      if (running) {
        throw new BerthError('RESTORE_DAEMON_RUNNING', `berthd is running on ${client.socketPath}: a database cannot be restored under it`, {
          details: { socket: client.socketPath },
        });
      }
      // berthd does the restore: it knows BERTH_HOME and holds the socket meanwhile. BERTHD names it when not on PATH.
      const code = await new Promise<number>((done, fail) => {
        const child = spawn(process.env.BERTHD || 'berthd', ['--restore', resolve(file), '--socket', client.socketPath], { stdio: 'inherit' });
        child.once('error', (err: NodeJS.ErrnoException) =>
          fail(err.code === 'ENOENT' ? new BerthError('PATH_NOT_FOUND', 'berthd is not on PATH', { hint: 'Run `berthd --restore FILE` yourself, or set BERTHD to its path.' }) : err),
        );
        child.once('exit', (c) => done(c ?? 1));
      });
      if (code !== 0) throw new ExitCode(code);
    });
}
