import { createRequire } from 'node:module';
import { Command, CommanderError } from 'commander';
import { BerthClient, defaultSocketPath } from '../client.js';
import * as agents from './commands/agents.js';
import * as completion from './commands/completion.js';
import * as daemon from './commands/daemon.js';
import * as images from './commands/images.js';
import * as maintenance from './commands/maintenance.js';
import * as projects from './commands/projects.js';
import * as schedules from './commands/schedules.js';
import * as sessions from './commands/sessions.js';
import * as tasks from './commands/tasks.js';
import * as watch from './commands/watch.js';
import { ExitCode, type CliContext } from './context.js';
import { Out, reportError } from './output.js';

/** This CLI's version: the SDK package's (dist/cli/index.js → ../../package.json). */
const VERSION = (createRequire(import.meta.url)('../../package.json') as { version: string }).version;

interface Globals {
  json?: boolean;
  socket?: string;
}

/** Runs the `berth` CLI; returns the process exit code. Output goes through `io` (tests capture it). */
export async function run(
  argv: string[],
  io: { stdout?: (s: string) => void; stderr?: (s: string) => void } = {},
): Promise<number> {
  const out = new Out(io);
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
    .version(VERSION, '-V, --version', 'the version of this berth CLI (berth status shows berthd\'s)')
    .showSuggestionAfterError()
    .exitOverride()
    .configureOutput({
      writeOut: (s) => out.print(s),
      writeErr: (s) => out.printErr(s),
      // A usage error (unknown option, missing argument) under --json is JSON too, as berth's own are.
      outputError: (s, write) =>
        out.json ? out.printJson({ error: { code: 'INVALID_PARAMS', message: s.replace(/^error:\s*/, '').trim() } }, { stderr: true }) : write(s),
    });

  const ctx: CliContext = { out, connect };
  daemon.register(program, ctx);
  projects.register(program, ctx);
  agents.register(program, ctx);
  sessions.register(program, ctx);
  images.register(program, ctx);
  tasks.register(program, ctx);
  schedules.register(program, ctx);
  watch.register(program, ctx);
  maintenance.register(program, ctx);
  // Last: it reads the whole command tree.
  completion.register(program, ctx);

  // --json may come before or after the subcommand; decide early so usage errors honour it too.
  out.json = argv.includes('--json');
  try {
    await program.parseAsync(argv);
    return 0;
  } catch (err) {
    if (err instanceof ExitCode) return err.code;
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

