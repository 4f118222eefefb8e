import { resolve } from 'node:path';
import { Command, CommanderError } from 'commander';
import { BerthClient, defaultSocketPath } from '../client.js';
import { BerthError, type Agent, type AgentLimits, type ImageBuildProgress, type NetworkMode, type RestartPolicy, type Session, type SessionState, type WorktreePolicy } from '../protocol/index.js';
import { ago, duration, emit, jsonText, line, Out, reportError, table, until } from './output.js';

interface Globals {
  json?: boolean;
  socket?: string;
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

function parsePairs(flag: string, pairs: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const p of pairs) {
    const i = p.indexOf('=');
    if (i <= 0) throw new BerthError('INVALID_PARAMS', `${flag} takes KEY=VALUE, got ${JSON.stringify(p)}`);
    out[p.slice(0, i)] = p.slice(i + 1);
  }
  return out;
}

/**
 * Build output: a progress bar per image on a TTY, `[image n/m] line` otherwise, NDJSON with --json.
 */
async function buildProgress(out: Out): Promise<{ update: (p: ImageBuildProgress) => void; stop: () => void }> {
  const bar = await out.progressBar(' {image} {bar} step {value}/{total}  {line}');
  let current: string | null = null;
  let started = false;
  const stop = () => {
    bar?.stop();
    started = false;
  };
  return {
    update: (p) => {
      if (out.json) return out.printJson({ progress: p });
      if (!bar) return out.printErr(`${line`[${p.name}${p.step ? ` ${p.step}/${p.total}` : ''}] ${p.line}`}\n`);
      if (p.name !== current) {
        stop();
        current = p.name;
      }
      if (!started && p.total) {
        bar.start(p.total, { image: p.name, line: '' });
        started = true;
      }
      if (started) bar.update(p.step ?? 0, { image: p.name, line: p.line.slice(0, 50) });
    },
    stop,
  };
}

function buildErrorSummary(e: { message: string; details?: Record<string, unknown> } | null): string {
  if (!e) return '';
  const lines = (e.details?.lines as string[] | undefined) ?? [];
  return lines.length ? `${e.message} (${lines.at(-1)!.slice(0, 80)})` : e.message;
}

/** The failed step's last lines, under the error. */
function showBuildFailure(out: Out, err: unknown): void {
  if (err instanceof BerthError && err.code === 'IMAGE_BUILD_FAILED' && !out.json) {
    const lines = (err.details?.lines as string[] | undefined) ?? [];
    if (lines.length) out.printErr(`${lines.map((l) => line`  | ${l}`).join('\n')}\n`);
  }
}

function sessionStatus(s: Session): string {
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

function sessionRows(list: Session[]): string[][] {
  return list.map((s) => [s.id, s.name, s.project, s.agent, s.mode, sessionStatus(s), String(s.restartCount), ago(s.createdAt)]);
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

/** A command's own exit status (berth exec passes the command's through). */
class ExitCode extends Error {
  constructor(readonly code: number) {
    super(`exit ${code}`);
  }
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
    .showSuggestionAfterError()
    .exitOverride()
    .configureOutput({ writeOut: (s) => out.print(s), writeErr: (s) => out.printErr(s) });

  program
    .command('status [id]')
    .description('without ID: the daemon, the engine and health checks; with ID: a session\'s branch, commits and uncommitted files')
    .action(async (id: string | undefined, _o, cmd: Command) => {
      if (id !== undefined) {
        const st = await connect(cmd).sessions.status({ id });
        emit(out, st, () => {
          const c = st.lastCommit;
          const lines = [
            line`branch   ${st.branch ?? '(none)'}` + (st.base && st.base !== st.branch ? line` (base ${st.base}: ${st.ahead} ahead, ${st.behind} behind)` : ''),
            c ? line`commit   ${c.sha.slice(0, 12)} ${c.subject} (${c.author})` : 'commit   (none)',
            st.dirty.length ? `changes  ${st.dirty.length} uncommitted:` : 'changes  none',
            ...st.dirty.map((d) => line`  ${d.status.padEnd(2)} ${d.path}`),
          ];
          return lines.join('\n') + '\n';
        });
        return;
      }
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
    .command('add <name> [path]')
    .description('register the git repository at PATH as project NAME, or clone one with --git URL')
    .option('--git <url>', 'clone this URL into $BERTH_HOME/repos/NAME (https://, ssh://, user@host:path, file://)')
    .option('--ssh-key <file>', 'deploy key for an ssh URL')
    .option('--branch <branch>', 'base branch for write sessions (default: what the main checkout has checked out)')
    .option('--worktrees <policy>', 'always (default) | when-shared')
    .action(async (name: string, path: string | undefined, o: { git?: string; sshKey?: string; branch?: string; worktrees?: string }, cmd: Command) => {
      if ((path === undefined) === (o.git === undefined)) throw new BerthError('INVALID_PARAMS', 'give either PATH or --git URL');
      const p = await connect(cmd).projects.add({
        name,
        ...(path !== undefined ? { path: resolve(path) } : { gitUrl: o.git! }),
        ...(o.sshKey ? { sshKeyPath: resolve(o.sshKey) } : {}),
        ...(o.branch ? { branch: o.branch } : {}),
        ...(o.worktrees ? { worktrees: o.worktrees as WorktreePolicy } : {}),
      });
      emit(out, p, () => `added project ${p.name} (${p.path}${p.gitUrl ? ` from ${p.gitUrl}` : ''})\n`);
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
    .command('update <name>')
    .description('change project settings')
    .option('--network <mode>', 'default network for its sessions: bridge | internal | none')
    .option('--worktrees <policy>', 'always | when-shared')
    .option('--default-image <image>', 'image every session of this project runs (overrides the agents\'); "none" to unset')
    .action(async (name: string, o: { network?: string; worktrees?: string; defaultImage?: string }, cmd: Command) => {
      const p = await connect(cmd).projects.update({
        name,
        ...(o.defaultImage !== undefined ? { defaultImage: o.defaultImage === 'none' ? null : o.defaultImage } : {}),
        ...(o.network !== undefined ? { network: o.network as NetworkMode } : {}),
        ...(o.worktrees !== undefined ? { worktrees: o.worktrees as WorktreePolicy } : {}),
      });
      emit(out, p, () => `updated project ${p.name}\n`);
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
    .option('--restart <policy>', 'never | on-failure (default) | always')
    .option('--network <mode>', 'bridge | internal (no egress) | none')
    .option('--read-only-rootfs', 'read-only root filesystem with a tmpfs /tmp')
    .option('--cap-add <CAP>', 'Linux capability to add back (repeatable)', collect, [])
    .option('--secret <ENV=name>', 'environment variable from a secret in $BERTH_HOME/secrets.yaml (repeatable)', collect, [])
    .action(async (name: string, command: string[], o: { image?: string; role?: string; readOnly?: boolean; env: string[]; memory?: string; cpus?: string; pids?: string; restart?: string; network?: string; readOnlyRootfs?: boolean; capAdd: string[]; secret: string[] }, cmd: Command) => {
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
        env: parsePairs('--env', o.env),
        limits,
        ...(o.restart !== undefined ? { restartPolicy: o.restart as RestartPolicy } : {}),
        ...(o.network !== undefined ? { network: o.network as NetworkMode } : {}),
        readOnlyRootfs: o.readOnlyRootfs === true,
        capAdd: o.capAdd,
        secrets: parsePairs('--secret', o.secret),
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

  program
    .command('start <project>')
    .description('start a session: an agent in its own container on PROJECT')
    .requiredOption('-a, --agent <agent>', 'agent profile to run')
    .option('--read-only', 'read session: the main checkout, mounted read-only')
    .option('--name <name>', 'session name (default PROJECT-N)')
    .option('-e, --env <KEY=VALUE>', 'extra environment (repeatable)', collect, [])
    .option('--restart <policy>', 'never | on-failure | always (default: the agent\'s)')
    .action(async (projectName: string, o: { agent: string; readOnly?: boolean; name?: string; env: string[]; restart?: string }, cmd: Command) => {
      const s = await connect(cmd).sessions.start({
        project: projectName,
        agent: o.agent,
        ...(o.readOnly ? { mode: 'read' as const } : {}),
        ...(o.name !== undefined ? { name: o.name } : {}),
        ...(o.env.length ? { env: parsePairs('--env', o.env) } : {}),
        ...(o.restart !== undefined ? { restartPolicy: o.restart as RestartPolicy } : {}),
      });
      emit(out, s, () => `${s.id}  ${s.name}  ${sessionStatus(s)}  (${s.containerName})\n`);
    });

  program
    .command('ps')
    .description('list sessions (running and starting; -a for all)')
    .option('-a, --all', 'include stopped, exited and failed sessions')
    .option('-p, --project <project>', 'only this project')
    .option('--state <state>', 'only sessions in this state')
    .action(async (o: { all?: boolean; project?: string; state?: string }, cmd: Command) => {
      const c = connect(cmd);
      const items: Session[] = [];
      let cursor: string | undefined;
      do {
        const page = await c.sessions.list({
          limit: 500,
          ...(o.project ? { project: o.project } : {}),
          ...(o.state ? { state: o.state as SessionState } : {}),
          ...(o.all || o.state ? {} : { active: true }),
          ...(cursor ? { cursor } : {}),
        });
        items.push(...page.items);
        cursor = page.nextCursor ?? undefined;
      } while (cursor);
      const shown = items;
      emit(out, shown, () =>
        shown.length
          ? table(['ID', 'NAME', 'PROJECT', 'AGENT', 'MODE', 'STATUS', 'RESTARTS', 'CREATED'], sessionRows(shown))
          : o.all
            ? 'no sessions\n'
            : 'no running sessions (berth ps -a shows all)\n',
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
    .description('output of a session')
    .option('-f, --follow', 'keep printing new output')
    .option('-n, --tail <n>', 'only the last N lines')
    .option('--since <time>', 'only lines after this ISO time')
    .option('-t, --timestamps', 'prefix each line with its time')
    .action(async (id: string, o: { follow?: boolean; tail?: string; since?: string; timestamps?: boolean }, cmd: Command) => {
      const c = connect(cmd);
      const ctl = new AbortController();
      const onSig = () => ctl.abort();
      process.once('SIGINT', onSig);
      try {
        for await (const l of c.logs(id, {
          follow: o.follow === true,
          signal: ctl.signal,
          ...(o.tail !== undefined ? { tail: Number(o.tail) } : {}),
          ...(o.since ? { since: o.since } : {}),
        })) {
          // The agent writes the whole stream, so its lines are printed as lines (escaped by print).
          const text = `${o.timestamps ? `${l.ts} ` : ''}${l.line}\n`;
          if (out.json) out.printJson(l);
          else if (l.stream === 'stderr') out.printErr(text);
          else out.print(text);
        }
      } finally {
        process.off('SIGINT', onSig);
      }
    });

  program
    .command('stop <id>')
    .description('stop a session: SIGTERM, then SIGKILL after --time seconds')
    .option('-t, --time <sec>', 'grace period before SIGKILL', '10')
    .action(async (id: string, o: { time: string }, cmd: Command) => {
      const s = await connect(cmd).sessions.stop({ id, timeoutSec: Number(o.time) });
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
    .option('-f, --force', 'remove even with uncommitted changes (they are saved on refs/berth/wip/NAME)')
    .option('--delete-branch', 'delete the session branch even if unmerged (its commits stay on refs/berth/archive/NAME)')
    .action(async (id: string, o: { force?: boolean; deleteBranch?: boolean }, cmd: Command) => {
      const r = await connect(cmd).sessions.remove({ id, ...(o.force ? { force: true } : {}), ...(o.deleteBranch ? { deleteBranch: true } : {}) });
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
    .action(async (id: string, o: { ff?: boolean; squash?: boolean; message?: string }, cmd: Command) => {
      if (o.ff && o.squash) throw new BerthError('INVALID_PARAMS', 'choose one of --ff and --squash');
      const r = await connect(cmd).sessions.merge({
        id,
        strategy: o.ff ? 'ff' : o.squash ? 'squash' : 'merge',
        ...(o.message ? { message: o.message } : {}),
      });
      emit(out, r, () => `merged ${r.branch} into ${r.base} (${r.strategy}): ${r.commit.slice(0, 12)}\n`);
    });

  program
    .command('exec <id> <cmd...>')
    .description('run a command in a running session, e.g. berth exec ID -- git status')
    .option('--timeout <sec>', 'give up after this many seconds', '60')
    .action(async (id: string, argv: string[], o: { timeout: string }, cmd: Command) => {
      const r = await connect(cmd).sessions.exec({ id, cmd: argv, timeoutSec: Number(o.timeout) });
      if (out.json) out.printJson(r);
      else {
        out.print(r.stdout);
        out.printErr(r.stderr);
      }
      if (r.exitCode !== 0) throw new ExitCode(r.exitCode);
    });

  program
    .command('images')
    .description('agent images on the engine (claude-agent-* and berth-built), and who uses them')
    .action(async (_o, cmd: Command) => {
      const list = await connect(cmd).images.list();
      emit(out, list, () =>
        list.length
          ? table(
              ['IMAGE', 'ID', 'STACK', 'VARIANT', 'SIZE', 'CREATED', 'USED BY'],
              list.map((i) => [
                i.name,
                i.id.replace(/^sha256:/, '').slice(0, 12),
                i.stack ?? '',
                i.variant ?? '',
                `${(i.sizeBytes / 1024 / 1024).toFixed(0)} MB`,
                ago(i.createdAt),
                [...i.usedBy.projects.map((p) => `project ${p}`), ...i.usedBy.agents.map((a) => `agent ${a}`), ...i.usedBy.sessions.map((s) => `session ${s}`)].join(', '),
              ]),
            )
          : 'no agent images (berth image build-defaults builds the shipped ones)\n',
      );
    });

  const image = program.command('image').description('build and remove agent images');
  image
    .command('build <name>')
    .description(
      'build an image through the engine API: a shipped stack (berth image build claude-agent-node, or --stack node) or your Dockerfile (--file)',
    )
    .option('-f, --file <dockerfile>', 'the Dockerfile')
    .option('--stack <stack>', 'a shipped stack under images/ (base, node, python, browser, flutter)')
    .option('--context <dir>', 'build context (default: the Dockerfile\'s directory)')
    .option('--dev', 'the dev variant (VARIANT=dev; the default for a :dev tag)')
    .option('--build-arg <K=V>', 'build argument (repeatable)', collect, [])
    .option('--no-cache', 'rebuild every step')
    .action(async (name: string, o: { file?: string; stack?: string; context?: string; dev?: boolean; buildArg: string[]; cache: boolean }, cmd: Command) => {
      const params = {
        name,
        ...(o.file ? { dockerfile: resolve(o.file) } : {}),
        ...(o.stack ? { stack: o.stack } : {}),
        ...(o.context ? { context: resolve(o.context) } : {}),
        buildArgs: parsePairs('--build-arg', o.buildArg),
        ...(o.dev ? { variant: 'dev' as const } : {}),
        ...(o.cache ? {} : { noCache: true }),
      };
      const progress = await buildProgress(out);
      try {
        const r = await connect(cmd).buildImage(params, progress.update);
        progress.stop();
        emit(out, { result: r }, () => `built ${r.name} (${r.id.replace(/^sha256:/, '').slice(0, 12)})\n`);
      } catch (err) {
        progress.stop();
        showBuildFailure(out, err);
        throw err;
      }
    });
  image
    .command('build-defaults')
    .description('build the shipped images/ stacks in dependency order (claude-agent-base first)')
    .option('--stack <stack>', 'only this stack and what it extends (repeatable)', collect, [])
    .option('--variants <list>', 'prod, dev or prod,dev', 'prod')
    .option('--tag <tag>', 'tag for prod images (dev images get dev or <tag>-dev)')
    .option('--build-arg <K=V>', 'build argument for every image (repeatable), e.g. BASE_IMAGE=...', collect, [])
    .option('--no-cache', 'rebuild every step')
    .action(async (o: { stack: string[]; variants: string; tag?: string; buildArg: string[]; cache: boolean }, cmd: Command) => {
      const variants = o.variants.split(',').map((v) => v.trim());
      for (const v of variants) {
        if (v !== 'prod' && v !== 'dev') throw new BerthError('INVALID_PARAMS', `--variants takes prod, dev or prod,dev; got ${JSON.stringify(o.variants)}`);
      }
      const progress = await buildProgress(out);
      let r;
      try {
        r = await connect(cmd).buildDefaultImages(
          {
            ...(o.stack.length ? { stacks: o.stack } : {}),
            variants: variants as ('prod' | 'dev')[],
            ...(o.tag ? { tag: o.tag } : {}),
            buildArgs: parsePairs('--build-arg', o.buildArg),
            ...(o.cache ? {} : { noCache: true }),
          },
          progress.update,
        );
      } finally {
        progress.stop();
      }
      emit(out, { result: r }, () =>
        table(
          ['IMAGE', 'STATUS', 'TIME', 'ID / ERROR'],
          r.images.map((i) => [
            i.name,
            i.status,
            i.seconds !== null ? `${i.seconds.toFixed(1)} s` : '',
            i.status === 'built' ? (i.id ?? '').replace(/^sha256:/, '').slice(0, 12) : `${i.error?.code ?? ''}: ${buildErrorSummary(i.error)}`,
          ]),
        ) + `${r.built} built, ${r.failed} failed, ${r.skipped} skipped\n`,
      );
      if (r.failed > 0 || r.skipped > 0) throw new ExitCode(1);
    });
  image
    .command('rm <name>')
    .alias('remove')
    .description('remove an image no session uses')
    .action(async (name: string, _o, cmd: Command) => {
      const r = await connect(cmd).images.remove({ name });
      emit(out, r, () => `removed image ${r.removed}\n`);
    });

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

