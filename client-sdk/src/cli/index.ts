import { resolve } from 'node:path';
import { Command, CommanderError } from 'commander';
import { BerthClient, defaultSocketPath } from '../client.js';
import { BerthError, type Agent, type AgentLimits } from '../protocol/index.js';
import { ago, duration, emit, reportError, table, type Out } from './output.js';

interface Globals {
  json?: boolean;
  socket?: string;
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

function parseEnv(pairs: string[]): Record<string, string> {
  const env: Record<string, string> = {};
  for (const p of pairs) {
    const i = p.indexOf('=');
    if (i <= 0) throw new BerthError('INVALID_PARAMS', `--env takes KEY=VALUE, got ${JSON.stringify(p)}`);
    env[p.slice(0, i)] = p.slice(i + 1);
  }
  return env;
}

function agentRows(agents: Agent[]): string[][] {
  return agents.map((a) => [
    a.name,
    a.image ?? '(default)',
    a.readOnly ? 'read' : 'write',
    a.role ?? '',
    a.command.join(' '),
  ]);
}

/** Runs the `berth` CLI; returns the process exit code. Output goes through `io` (tests capture it). */
export async function run(
  argv: string[],
  io: { stdout?: (s: string) => void; stderr?: (s: string) => void } = {},
): Promise<number> {
  const out: Out = {
    json: false,
    stdout: io.stdout ?? ((s) => process.stdout.write(s)),
    stderr: io.stderr ?? ((s) => process.stderr.write(s)),
  };
  let client: BerthClient | null = null;
  const connect = (cmd: Command): BerthClient => {
    const g = cmd.optsWithGlobals<Globals>();
    out.json = g.json === true;
    client ??= new BerthClient({ socketPath: g.socket ?? defaultSocketPath() });
    return client;
  };

  const program = new Command('berth')
    .description('berth: run AI coding agents side by side, each in its own container and checkout')
    .option('--json', 'machine-readable JSON on stdout, nothing else')
    .option('--socket <path>', 'berthd socket (default: $BERTH_SOCKET or ~/.berth/berth.sock)')
    .showSuggestionAfterError()
    .exitOverride()
    .configureOutput({ writeOut: out.stdout, writeErr: out.stderr });

  program
    .command('status')
    .description('show the daemon, the engine and health checks')
    .action(async (_o, cmd: Command) => {
      const s = await connect(cmd).daemon.status();
      emit(out, s, () => {
        const engine = s.engine.available
          ? `Docker ${s.engine.version} (API ${s.engine.apiVersion}) at ${s.engine.host}`
          : `UNAVAILABLE at ${s.engine.host}: ${s.engine.error}`;
        const lines = [
          `berthd ${s.version}  pid ${s.pid}  up ${duration(s.uptimeSec)}`,
          `socket   ${s.socket}`,
          `home     ${s.config.home}`,
          `mode     ${s.config.agentMode}`,
          `engine   ${engine}`,
          `health   ${s.health.status}`,
          ...s.health.checks.map(
            (c) => `  ${c.ok ? 'ok  ' : 'FAIL'} ${c.name}: ${c.detail}${c.ok || !c.remediation ? '' : `\n       fix: ${c.remediation}`}`,
          ),
        ];
        return lines.join('\n') + '\n';
      });
    });

  const project = program.command('project').description('manage projects (git repositories under PROJECTS_ROOT)');
  project
    .command('add <name> <path>')
    .description('register the git repository at PATH as project NAME')
    .action(async (name: string, path: string, _o, cmd: Command) => {
      const p = await connect(cmd).projects.add({ name, path: resolve(path) });
      emit(out, p, () => `added project ${p.name} (${p.path})\n`);
    });
  project
    .command('ls')
    .alias('list')
    .description('list projects')
    .action(async (_o, cmd: Command) => {
      const list = await connect(cmd).projects.list();
      emit(out, list, () =>
        list.length ? table(['NAME', 'PATH', 'ADDED'], list.map((p) => [p.name, p.path, ago(p.createdAt)])) : 'no projects\n',
      );
    });
  project
    .command('show <name>')
    .description('show one project')
    .action(async (name: string, _o, cmd: Command) => {
      const p = await connect(cmd).projects.get({ name });
      emit(out, p, () => `name   ${p.name}\npath   ${p.path}\nadded  ${p.createdAt}\n`);
    });
  project
    .command('rm <name>')
    .alias('remove')
    .description('forget a project (the repository on disk is not touched)')
    .action(async (name: string, _o, cmd: Command) => {
      const r = await connect(cmd).projects.remove({ name });
      emit(out, r, () => `removed project ${r.removed} (files on disk untouched)\n`);
    });

  const agent = program.command('agent').description('manage agent profiles');
  agent
    .command('add <name> <command...>')
    .description('define (or redefine) an agent; put the command after --, e.g. berth agent add fixer -- claude -p "fix"')
    .option('--image <image>', 'image to run (default: project or daemon default)')
    .option('--role <role>', 'free-form role, e.g. reviewer')
    .option('--read-only', 'run read sessions: the main checkout, mounted read-only')
    .option('-e, --env <KEY=VALUE>', 'environment for the agent (repeatable)', collect, [])
    .option('--memory <size>', 'memory limit, e.g. 2g')
    .option('--cpus <n>', 'CPU limit, e.g. 1.5')
    .option('--pids <n>', 'process limit, e.g. 256')
    .action(async (name: string, command: string[], o: { image?: string; role?: string; readOnly?: boolean; env: string[]; memory?: string; cpus?: string; pids?: string }, cmd: Command) => {
      const limits: AgentLimits = {};
      if (o.memory !== undefined) limits.memory = o.memory;
      if (o.cpus !== undefined) limits.cpus = Number(o.cpus);
      if (o.pids !== undefined) limits.pids = Number(o.pids);
      const c = connect(cmd);
      const a = await c.agents.define({
        name,
        command,
        ...(o.image !== undefined ? { image: o.image } : {}),
        ...(o.role !== undefined ? { role: o.role } : {}),
        readOnly: o.readOnly === true,
        env: parseEnv(o.env),
        limits,
      });
      emit(out, a, () => `defined agent ${a.name}: ${a.command.join(' ')}\n`);
    });
  agent
    .command('ls')
    .alias('list')
    .description('list agents')
    .action(async (_o, cmd: Command) => {
      const list = await connect(cmd).agents.list();
      emit(out, list, () => (list.length ? table(['NAME', 'IMAGE', 'MODE', 'ROLE', 'COMMAND'], agentRows(list)) : 'no agents\n'));
    });
  agent
    .command('show <name>')
    .description('show one agent')
    .action(async (name: string, _o, cmd: Command) => {
      const a = await connect(cmd).agents.get({ name });
      emit(out, a, () =>
        [
          `name     ${a.name}`,
          `image    ${a.image ?? '(default)'}`,
          `command  ${a.command.join(' ')}`,
          `mode     ${a.readOnly ? 'read-only' : 'write'}`,
          `role     ${a.role ?? ''}`,
          `env      ${Object.keys(a.env).join(', ')}`,
          `limits   ${JSON.stringify(a.limits)}`,
        ].join('\n') + '\n',
      );
    });
  agent
    .command('rm <name>')
    .alias('remove')
    .description('remove an agent profile')
    .action(async (name: string, _o, cmd: Command) => {
      const r = await connect(cmd).agents.remove({ name });
      emit(out, r, () => `removed agent ${r.removed}\n`);
    });

  // --json may come before or after the subcommand; decide early so usage errors honour it too.
  out.json = argv.includes('--json');
  try {
    await program.parseAsync(argv);
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      return err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.code === 'commander.help'
        ? 0
        : err.exitCode || 2;
    }
    return reportError(out, err);
  } finally {
    (client as BerthClient | null)?.close();
  }
}

