import type { Command } from 'commander';
import { BerthError, RESTART_POLICIES, type Agent, type AgentLimits, type NetworkMode } from '../../protocol/index.js';
import { collect, oneOf, parseDurationSec, parsePairs, wholeNumber, type CliContext } from '../context.js';
import { cut, ids, emit, shellQuote, table } from '../output.js';
import { exactTokens, parseBudgetTokens } from '../usage.js';

/** Width of the COMMAND column (the whole command with --no-trunc, or in `agent show`). */
const COMMAND_WIDTH = 48;

function agentRows(agents: Agent[], noTrunc: boolean): string[][] {
  return agents.map((a) => [
    a.name,
    cut(a.image ?? '(default)', 40, noTrunc),
    a.readOnly ? 'read' : 'write',
    a.role ?? '',
    cut(shellQuote(a.command), COMMAND_WIDTH, noTrunc),
  ]);
}

export function register(program: Command, { out, connect }: CliContext): void {
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
    .option('--restart <policy>', 'never | on-failure (default) | always')
    .option('--network <mode>', 'bridge | internal (no egress) | none')
    .option('--read-only-rootfs', 'read-only root filesystem with a tmpfs /tmp')
    .option('--cap-add <CAP>', 'Linux capability to add back (repeatable)', collect, [])
    .option('--secret <ENV=name>', 'environment variable from a secret in $BERTH_HOME/secrets.yaml (repeatable)', collect, [])
    .option('--budget-tokens <n>', 'model tokens each session may use through its Claude bridge (input, output and cache together)')
    .option('--stuck-after <duration>', 'no output, file change, hook or CPU for this long is stuck (90s, 10m; default AGENT_STUCK_TIMEOUT_MINUTES)')
    .option('--on-stuck <action>', 'restart (default; 3 in a row at most, then notify) | notify | none')
    .action(async (name: string, command: string[], o: { image?: string; role?: string; readOnly?: boolean; env: string[]; memory?: string; cpus?: string; pids?: string; restart?: string; network?: string; readOnlyRootfs?: boolean; capAdd: string[]; secret: string[]; budgetTokens?: string; stuckAfter?: string; onStuck?: string }, cmd: Command) => {
      const budget = o.budgetTokens !== undefined ? parseBudgetTokens(o.budgetTokens) : undefined;
      const stuckAfterSec = o.stuckAfter !== undefined ? parseDurationSec(o.stuckAfter, '--stuck-after') : undefined;
      const onStuck = o.onStuck !== undefined ? oneOf(o.onStuck, '--on-stuck', ['restart', 'notify', 'none'] as const) : undefined;
      const restart = o.restart !== undefined ? oneOf(o.restart, '--restart', RESTART_POLICIES) : undefined;
      const limits: AgentLimits = {};
      if (o.memory !== undefined) limits.memory = o.memory;
      if (o.cpus !== undefined) limits.cpus = Number(o.cpus);
      if (o.pids !== undefined) limits.pids = wholeNumber(o.pids, '--pids', 1);
      const c = connect(cmd);
      const a = await c.agents.define({
        name,
        command,
        ...(o.image !== undefined ? { image: o.image } : {}),
        ...(o.role !== undefined ? { role: o.role } : {}),
        readOnly: o.readOnly === true,
        env: parsePairs('--env', o.env),
        limits,
        ...(restart !== undefined ? { restartPolicy: restart } : {}),
        ...(o.network !== undefined ? { network: o.network as NetworkMode } : {}),
        readOnlyRootfs: o.readOnlyRootfs === true,
        capAdd: o.capAdd,
        secrets: parsePairs('--secret', o.secret),
        ...(budget !== undefined ? { budgetTokens: budget } : {}),
        ...(stuckAfterSec !== undefined ? { stuckAfterSec } : {}),
        ...(onStuck !== undefined ? { onStuck } : {}),
      });
      emit(out, a, () => `defined agent ${a.name}: ${shellQuote(a.command)}\n`);
    });
  agent
    .command('ls')
    .alias('list')
    .description('list agents')
    .option('-q, --quiet', 'only the names, one a line')
    .option('--no-trunc', 'do not cut long commands and images to the column')
    .action(async (o: { quiet?: boolean; trunc: boolean }, cmd: Command) => {
      const list = await connect(cmd).agents.list();
      if (o.quiet && !out.json) return out.print(ids(list.map((a) => a.name)));
      emit(out, list, () => (list.length ? table(['NAME', 'IMAGE', 'MODE', 'ROLE', 'COMMAND'], agentRows(list, !o.trunc)) : 'no agents\n'));
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
          `command  ${shellQuote(a.command)}`,
          `mode     ${a.readOnly ? 'read-only' : 'write'}`,
          `restart  ${a.restartPolicy}`,
          `role     ${a.role ?? ''}`,
          `env      ${Object.keys(a.env).join(', ')}`,
          `limits   ${JSON.stringify(a.limits)}`,
          `budget   ${a.budgetTokens == null ? 'none' : `${exactTokens(a.budgetTokens)} tokens per session`}`,
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
}
