import { constants as osConstants } from 'node:os';
import type { Readable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { StringDecoder } from 'node:string_decoder';
import type { Command } from 'commander';
import type { BerthClient } from '../../client.js';
import { BerthError, RESTART_POLICIES, SESSION_STATES, type ParamsOf, type Session, type SessionState } from '../../protocol/index.js';
import { collect, ExitCode, interruptible, oneOf, parseDurationSec, parsePairs, parseTimeArg, wholeNumber, type CliContext, usageError } from '../context.js';
import { ids, ago, emit, jsonText, line, table, until, type Out } from '../output.js';
import { exitCodeOf, finishedForGood, followSession, waitForSession } from '../follow.js';
import { attachTerminal, stdinIsTerminal } from '../terminal.js';
import { parseBudgetTokens, requestsTable, sessionsWithUsage, sessionUsageText, sumUsage, tokensCell, usageTable } from '../usage.js';

/** What `exec --json` keeps of each stream, as sessions.exec does. */
const EXEC_JSON_MAX = 4 * 1024 * 1024;

function sessionStatus(s: Session): string {
  if (s.queued) return 'pending (waiting for a slot)';
  if (s.gracefulStop) return `stopping (graceful), stopped ${until(s.gracefulStop.deadline)}`;
  switch (s.state) {
    case 'running':
      return s.startedAt ? `running ${ago(s.startedAt).replace(' ago', '')}` : 'running';
    case 'exited':
      return s.nextRestartAt ? `exited (${s.exitCode}), restart ${until(s.nextRestartAt)}` : `exited (${s.exitCode})`;
    case 'failed':
      return `failed: ${s.error?.code ?? ''}`;
    default:
      return s.state;
  }
}

/** What the agent does and for how long (`working 4s`, `waiting-input 3m`); `-` before any report, or when it is not running. */
function activityCell(s: Session): string {
  if (!s.activity || s.state !== 'running') return '-';
  return `${s.activity.state} ${ago(s.activity.since).replace(' ago', '')}`;
}

function sessionRows(list: Session[]): string[][] {
  return list.map((s) => [s.id, s.name, s.project, s.agent, s.mode, sessionStatus(s), activityCell(s), String(s.restartCount), tokensCell(s), ago(s.createdAt)]);
}

/** Every page of sessions.list, following the cursor. */
async function listAll(c: BerthClient, filter: Omit<ParamsOf<'sessions.list'>, 'limit' | 'cursor'>): Promise<Session[]> {
  const items: Session[] = [];
  let cursor: string | undefined;
  do {
    const page = await c.sessions.list({ ...filter, limit: 500, ...(cursor ? { cursor } : {}) });
    items.push(...page.items);
    cursor = page.nextCursor ?? undefined;
  } while (cursor);
  return items;
}

export function register(program: Command, { out, connect }: CliContext): void {
  program
    .command('start <project>')
    .description('start a session: an agent in its own container on PROJECT')
    .requiredOption('-a, --agent <agent>', 'agent profile to run')
    .option('--read-only', 'read session: the main checkout, mounted read-only')
    .option('--name <name>', 'session name (default PROJECT-N)')
    .option('-e, --env <KEY=VALUE>', 'extra environment (repeatable)', collect, [])
    .option('--restart <policy>', 'never | on-failure | always (default: the agent\'s)')
    .option('--budget-tokens <n>', 'model tokens this session may use through its Claude bridge (default: the agent\'s); "none" for no budget')
    .option('--priority <n>', 'when it waits for a slot (BERTH_MAX_RUNNING): higher starts first (default 0)')
    .option('-f, --follow', 'then print its output until it is done (across restarts by its policy), and exit with its exit code')
    .action(async (projectName: string, o: { agent: string; readOnly?: boolean; name?: string; env: string[]; restart?: string; budgetTokens?: string; priority?: string; follow?: boolean }, cmd: Command) => {
      const budget = o.budgetTokens !== undefined ? parseBudgetTokens(o.budgetTokens, { allowNone: true }) : undefined;
      const priority = o.priority !== undefined ? wholeNumber(o.priority, '--priority', -1000, 1000) : undefined;
      const restart = o.restart !== undefined ? oneOf(o.restart, '--restart', RESTART_POLICIES) : undefined;
      const s = await connect(cmd).sessions.start({
        project: projectName,
        agent: o.agent,
        ...(o.readOnly ? { mode: 'read' as const } : {}),
        ...(o.name !== undefined ? { name: o.name } : {}),
        ...(o.env.length ? { env: parsePairs('--env', o.env) } : {}),
        ...(restart !== undefined ? { restartPolicy: restart } : {}),
        ...(budget !== undefined ? { budgetTokens: budget } : {}),
        ...(priority !== undefined ? { priority } : {}),
      });
      if (!o.follow) return emit(out, s, () => `${s.id}  ${s.name}  ${sessionStatus(s)}  (${s.containerName})\n`);
      // Following: the session line on stderr (stdout is the agent's), then its output.
      if (!out.json) out.printErr(`${s.id}  ${s.name}  ${sessionStatus(s)}  (${s.containerName})\n`);
      const end = await interruptible((signal) => followSession(connect(cmd), out, s.id, signal));
      if (end) {
        if (!out.json) out.printErr(`${end.name} ${sessionStatus(end)}\n`);
        const code = exitCodeOf(end);
        if (code !== 0) throw new ExitCode(code);
      }
    });

  program
    .command('wait <id>')
    .description('wait until the session is done (exited, failed or stopped, with no restart coming); print and exit with its exit code')
    .option('--state <state>', 'wait for this state instead (running, exited, stopped, failed, ...); exit 0 once reached')
    .action(async (id: string, o: { state?: string }, cmd: Command) => {
      const want = o.state !== undefined ? oneOf(o.state, '--state', SESSION_STATES) : undefined;
      const s = await interruptible((signal) => waitForSession(connect(cmd), id, (x) => (want ? x.state === want : finishedForGood(x)), signal));
      if (!s) throw new BerthError('SESSION_NOT_FOUND', `session ${id} was removed while waiting`, { details: { id } });
      const code = want ? 0 : exitCodeOf(s);
      emit(out, { id: s.id, name: s.name, state: s.state, exitCode: s.exitCode ?? null }, () => (want ? `${s.name} ${s.state}\n` : `${code}\n`));
      if (code !== 0) throw new ExitCode(code);
    });

  program
    .command('ps')
    .description('list sessions (running and starting; -a for all)')
    .option('-a, --all', 'include stopped, exited and failed sessions')
    .option('-p, --project <project>', 'only this project')
    .option('--state <state>', 'only sessions in this state')
    .option('-q, --quiet', 'only the ids, one a line')
    .option('--removed', 'removed sessions instead (kept until log retention ends; `berth logs` reads them)')
    .action(async (o: { all?: boolean; project?: string; state?: string; quiet?: boolean; removed?: boolean }, cmd: Command) => {
      if (o.removed) {
        if (o.state) throw usageError('--state does not apply to removed sessions');
        const gone = await listAll(connect(cmd), { removed: true, ...(o.project ? { project: o.project } : {}) });
        if (o.quiet && !out.json) return out.print(ids(gone.map((s) => s.id)));
        return emit(out, gone, () =>
          gone.length
            ? table(
                ['ID', 'NAME', 'PROJECT', 'AGENT', 'MODE', 'EXIT', 'CREATED', 'REMOVED'],
                gone.map((s) => [s.id, s.name, s.project, s.agent, s.mode, s.exitCode === null ? '-' : String(s.exitCode), ago(s.createdAt), s.removedAt ? ago(s.removedAt) : '-']),
              )
            : 'no removed sessions\n',
        );
      }
      const shown = await listAll(connect(cmd), {
        ...(o.project ? { project: o.project } : {}),
        ...(o.state ? { state: o.state as SessionState } : {}),
        ...(o.all || o.state ? {} : { active: true }),
      });
      if (o.quiet && !out.json) return out.print(ids(shown.map((s) => s.id)));
      emit(out, shown, () =>
        shown.length
          ? table(['ID', 'NAME', 'PROJECT', 'AGENT', 'MODE', 'STATUS', 'ACTIVITY', 'RESTARTS', 'TOKENS', 'CREATED'], sessionRows(shown))
          : o.all
            ? 'no sessions\n'
            : 'no running sessions (berth ps -a shows all)\n',
      );
    });

  program
    .command('usage [id]')
    .description('model usage through the Claude bridge: one session\'s, or a table of every session with usage')
    .option('-p, --project <project>', 'only this project (the table)')
    .option('--requests', 'the session\'s bridged requests, one line each (needs ID)')
    .option('-n, --limit <n>', 'with --requests: only the last N')
    .action(async (id: string | undefined, o: { project?: string; requests?: boolean; limit?: string }, cmd: Command) => {
      if (o.requests && id === undefined) throw usageError('--requests needs a session: berth usage ID --requests');
      if (o.project !== undefined && id !== undefined) throw usageError('--project filters the table: give it without ID');
      if (o.limit !== undefined && !o.requests) throw usageError('--limit goes with --requests');
      if (o.limit !== undefined && !/^[1-9][0-9]*$/.test(o.limit)) throw usageError(`--limit takes a positive whole number, got ${JSON.stringify(o.limit)}`);
      const c = connect(cmd);
      if (id !== undefined && o.requests) {
        const list = await c.sessions.requests({ id, ...(o.limit !== undefined ? { limit: Number(o.limit) } : {}) });
        emit(out, list, () => (list.length ? requestsTable(list) : 'no bridged requests\n'));
        return;
      }
      if (id !== undefined) {
        const u = await c.sessions.usage({ id });
        emit(out, u, () => sessionUsageText(u));
        return;
      }
      const used = sessionsWithUsage(await listAll(c, o.project ? { project: o.project } : {}));
      emit(out, { sessions: used, total: sumUsage(used.map((s) => s.usage)) }, () =>
        used.length ? usageTable(used) : 'no session has used the Claude bridge yet\n',
      );
    });

  program
    .command('inspect <id>')
    .description('everything about one session')
    .action(async (id: string, _o, cmd: Command) => {
      const s = await connect(cmd).sessions.get({ id });
      emit(out, s, () => `${jsonText(s, true)}\n`);
    });

  program
    .command('logs <id>')
    .description("output of a session, from berth's log store: all of it unless -n/--since/--until/--grep narrow it (a removed session's too, until retention ends)")
    .option('-f, --follow', 'keep printing new output (across restarts of the session) until it is removed')
    .option('-n, --tail <n>', 'only the last N lines (that pass --grep/--since/--until)')
    .option('--since <time>', 'only lines from this time on: 10m (ago), 1h30m, 2026-12-02T10:00:00Z or Unix seconds')
    .option('--until <time>', 'only lines up to this time (same forms); with -f, stop following then')
    .option('--grep <regex>', 'only lines whose text matches this JavaScript regular expression')
    .option('-t, --timestamps', 'prefix each line with its time')
    .action(async (id: string, o: { follow?: boolean; tail?: string; since?: string; until?: string; grep?: string; timestamps?: boolean }, cmd: Command) => {
      const tail = o.tail !== undefined ? wholeNumber(o.tail, '--tail') : undefined;
      const since = o.since !== undefined ? parseTimeArg(o.since, '--since') : undefined;
      const until = o.until !== undefined ? parseTimeArg(o.until, '--until') : undefined;
      const c = connect(cmd);
      const ctl = new AbortController();
      const onSig = () => ctl.abort();
      process.once('SIGINT', onSig);
      const untilMs = until !== undefined ? Date.parse(until) : Infinity;
      // A quiet session sends no line past --until: stop following by the clock too.
      const stopAt = o.follow && until !== undefined ? setTimeout(onSig, Math.max(0, untilMs - Date.now())) : undefined;
      const printer = new LogPrinter(out, onSig);
      try {
        for await (const batch of c.logBatches(id, {
          follow: o.follow === true,
          signal: ctl.signal,
          ...(tail !== undefined ? { tail } : {}),
          ...(since !== undefined ? { since } : {}),
          ...(until !== undefined ? { until } : {}),
          ...(o.grep !== undefined ? { grep: o.grep } : {}),
        })) {
          if (ctl.signal.aborted) break;
          // The agent writes the whole stream, so its lines are printed as lines (escaped by print).
          for (const l of batch) {
            if (out.json) printer.json(l);
            else printer.line(l.stream === 'stderr', o.timestamps ? `${l.ts} ${l.line}\n` : `${l.line}\n`);
          }
          await printer.ready();
        }
      } finally {
        printer.flush();
        clearTimeout(stopAt);
        process.off('SIGINT', onSig);
      }
    });

  program
    .command('stop <id>')
    .description('stop a session: SIGTERM, then SIGKILL after --time seconds; --graceful asks the agent to finish first')
    .option('-t, --time <sec>', 'grace period before SIGKILL', '10')
    .option('--graceful', 'ask the agent to finish its current work and exit (/host/stop-requested); never restarted by its policy')
    .option('--within <duration>', 'with --graceful: stop it anyway after this long (90s, 30m, 2h)', '10m')
    .action(async (id: string, o: { time: string; graceful?: boolean; within: string }, cmd: Command) => {
      const c = connect(cmd);
      const s = o.graceful
        ? await c.sessions.stop({ id, graceful: true, withinSec: parseDurationSec(o.within, '--within') })
        : await c.sessions.stop({ id, timeoutSec: wholeNumber(o.time, '--time') });
      emit(out, s, () => `${s.name} ${sessionStatus(s)}\n`);
    });

  program
    .command('restart <id>')
    .description('a fresh container for the session, from the current agent profile (/agent is kept)')
    .action(async (id: string, _o, cmd: Command) => {
      const s = await connect(cmd).sessions.restart({ id });
      emit(out, s, () => `${s.name} ${sessionStatus(s)}\n`);
    });

  program
    .command('rm <id>')
    .description('remove a session: container, /agent volume and checkout; work is kept (see the output)')
    .option('-s, --stop', 'stop the session first if it runs (without it, a running session is refused)')
    .option('-f, --force', 'remove even with uncommitted changes (they are saved on refs/berth/wip/NAME)')
    .option('--delete-branch', 'delete the session branch even if unmerged (its commits stay on refs/berth/archive/NAME)')
    .action(async (id: string, o: { stop?: boolean; force?: boolean; deleteBranch?: boolean }, cmd: Command) => {
      const r = await connect(cmd).sessions.remove({ id, stop: o.stop === true, ...(o.force ? { force: true } : {}), ...(o.deleteBranch ? { deleteBranch: true } : {}) });
      emit(out, r, () => [`removed session ${r.name} (${r.removed})`, ...r.notes.map((n) => line`  ${n}`)].join('\n') + '\n');
    });

  program
    .command('diff <id>')
    .description('the session\'s changes (committed and not) against its base branch')
    .option('--stat', 'only a summary per file')
    .action(async (id: string, o: { stat?: boolean }, cmd: Command) => {
      const d = await connect(cmd).sessions.diff({ id, ...(o.stat ? { stat: true } : {}) });
      emit(out, d, () => d.diff + (d.truncated ? '\n[diff truncated at 1 MiB]\n' : ''));
    });

  program
    .command('merge <id>')
    .description('merge the session branch into its base branch in the main checkout (which must be clean and on the base)')
    .option('--ff', 'fast-forward only')
    .option('--squash', 'one commit with all the changes')
    .option('-m, --message <msg>', 'commit message')
    .option('--include-uncommitted', 'first commit the session\'s uncommitted and untracked files in its checkout (inside its container), so they go in too')
    .action(async (id: string, o: { ff?: boolean; squash?: boolean; message?: string; includeUncommitted?: boolean }, cmd: Command) => {
      if (o.ff && o.squash) throw usageError('choose one of --ff and --squash');
      const r = await connect(cmd).sessions.merge({
        id,
        strategy: o.ff ? 'ff' : o.squash ? 'squash' : 'merge',
        ...(o.message ? { message: o.message } : {}),
        ...(o.includeUncommitted ? { includeUncommitted: true } : {}),
      });
      emit(out, r, () => {
        const made = r.committedUncommitted ? line`committed the uncommitted work in the session first: ${r.committedUncommitted.slice(0, 12)}` + '\n' : '';
        const left = r.leftOut.length
          ? line`left out (not committed in the session; --include-uncommitted takes them): ${r.leftOut.slice(0, 10).join(', ')}${r.leftOut.length > 10 ? ` and ${r.leftOut.length - 10} more` : ''}` + '\n'
          : '';
        return `${made}merged ${r.branch} into ${r.base} (${r.strategy}): ${r.commit.slice(0, 12)}\n${left}`;
      });
    });

  program
    .command('exec <id> <cmd...>')
    .description('run a command in a running session, e.g. berth exec ID -- git status, or berth exec -it ID -- bash')
    .option('-i, --interactive', 'pass stdin to the command')
    .option('-t, --tty', 'give the command a terminal (needs one on stdin); with -i, an interactive shell')
    .option('-e, --env <KEY=VALUE>', 'extra environment for the command (repeatable)', collect, [])
    .option('-w, --workdir <dir>', 'working directory inside the session (absolute)')
    .option('--timeout <sec>', 'give up after this many seconds (default: no limit)')
    .action(
      async (
        id: string,
        argv: string[],
        o: { interactive?: boolean; tty?: boolean; env: string[]; workdir?: string; timeout?: string },
        cmd: Command,
      ) => {
        const c = connect(cmd);
        const timeoutSec = o.timeout !== undefined ? wholeNumber(o.timeout, '--timeout', 1, 7 * 24 * 3600) : undefined;
        const env = o.env.length ? parsePairs('--env', o.env) : undefined;
        if (o.workdir !== undefined && !o.workdir.startsWith('/')) throw usageError(`--workdir takes an absolute path inside the session, got ${JSON.stringify(o.workdir)}`);
        if (o.tty && out.json) throw usageError('--json prints the finished result of a command: leave -t off');
        if (o.tty && !stdinIsTerminal()) throw usageError('the input device is not a TTY: -t needs a terminal on stdin (leave -t off when stdin is a pipe or a file)');
        const size = o.tty ? out.terminalSize() : null;
        const x = await c.sessions.execStream({
          id,
          cmd: argv,
          ...(o.tty ? { tty: true } : {}),
          ...(o.interactive ? { stdin: true } : {}),
          ...(env ? { env } : {}),
          ...(o.workdir !== undefined ? { workdir: o.workdir } : {}),
          ...(size ? { cols: size.cols, rows: size.rows } : {}),
          ...(timeoutSec !== undefined ? { timeoutSec } : {}),
        });
        let signalled: NodeJS.Signals | null = null;
        const release = attachTerminal({
          raw: o.tty === true && o.interactive === true,
          stdin: o.interactive ? x.stdin : null,
          onResize: o.tty
            ? () => {
                const now = out.terminalSize();
                if (now) x.resize(now.cols, now.rows);
              }
            : null,
          // The command is detached (stdin ends, a terminal hangs up); the CLI ends as the signal says.
          onSignal: (sig) => {
            signalled ??= sig;
            x.close();
          },
        });
        let code: number;
        try {
          if (out.json) {
            // The finished result, as sessions.exec gives it (each stream kept up to 4 MiB).
            const collected = { stdout: [] as Buffer[], stderr: [] as Buffer[] };
            const keep = (name: 'stdout' | 'stderr') => {
              let size = 0;
              return (b: Buffer) => {
                if (size < EXEC_JSON_MAX) collected[name].push(b.subarray(0, EXEC_JSON_MAX - size));
                size += b.length;
              };
            };
            x.stdout.on('data', keep('stdout'));
            x.stderr.on('data', keep('stderr'));
            await Promise.all([finished(x.stdout), finished(x.stderr)]);
            code = await x.exit;
            out.printJson({ exitCode: code, stdout: Buffer.concat(collected.stdout).toString('utf8'), stderr: Buffer.concat(collected.stderr).toString('utf8') });
          } else if (o.tty) {
            x.stdout.on('data', (b: Buffer) => out.raw(b));
            x.stderr.on('data', (b: Buffer) => out.raw(b));
            await Promise.all([finished(x.stdout), finished(x.stderr)]);
            code = await x.exit;
          } else {
            // The command's text as it comes, escaped like all output for a human (see output.ts);
            // a character split across chunks is decoded whole.
            const print = (stream: Readable, write: (s: string) => void) => {
              const d = new StringDecoder('utf8');
              stream.on('data', (b: Buffer) => write(d.write(b)));
              return finished(stream).then(() => write(d.end()));
            };
            await Promise.all([print(x.stdout, (t) => out.print(t)), print(x.stderr, (t) => out.printErr(t))]);
            code = await x.exit;
          }
        } catch (err) {
          if (signalled) code = 128 + (osConstants.signals[signalled] ?? 1);
          else throw err;
        } finally {
          release();
          x.close();
        }
        if (signalled) code = 128 + (osConstants.signals[signalled] ?? 1);
        if (code !== 0) throw new ExitCode(code);
      },
    );
}

/**
 * Prints log lines in chunks (a write per line costs more than the read), flushed once the lines
 * at hand are printed so `-f` shows each at once; waits on stdout so a slow reader slows the read,
 * and stops the read when stdout's reader is gone (`| head`).
 */
class LogPrinter {
  private buf = '';
  private toErr = false;
  private scheduled = false;
  private json_: unknown[] = [];

  constructor(
    private readonly out: Out,
    private readonly onGone: () => void,
  ) {}

  line(toErr: boolean, text: string): void {
    if (this.buf && toErr !== this.toErr) this.flush();
    this.toErr = toErr;
    this.buf += text;
    this.schedule();
  }

  json(value: unknown): void {
    this.json_.push(value);
    this.schedule();
  }

  async ready(): Promise<void> {
    if (this.buf.length >= 64 * 1024 || this.json_.length >= 256) this.flush();
    await this.out.stdoutReady(this.onGone);
  }

  flush(): void {
    if (this.buf) {
      if (this.toErr) this.out.printErr(this.buf);
      else this.out.print(this.buf);
      this.buf = '';
    }
    for (const v of this.json_) this.out.printJson(v);
    this.json_ = [];
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.flush();
    });
  }
}
