import type { Command } from 'commander';
import type { CliContext } from '../context.js';
import { oneOf } from '../context.js';
import { ids } from '../output.js';

/** What a command's first argument names, completed from berthd (`berth __complete KIND`). */
type ArgKind = 'session' | 'project' | 'agent' | 'image' | 'task' | 'pool' | 'schedule';
const KINDS = ['session', 'project', 'agent', 'image', 'task', 'pool', 'schedule'] as const;
/** Tasks worth naming: not those finished (a backlog may hold 100,000 done ones). */
const LIVE_TASK_STATES = ['open', 'claimed', 'review', 'failed'] as const;

interface Node {
  /** Words after `berth`, e.g. `agent add` (empty for the top level). */
  path: string;
  subs: string[];
  /** Every spelling of every option, e.g. `-f --follow`. */
  opts: string[];
  /** Options that take a value (their next word is not a command). */
  valued: string[];
  arg: ArgKind | null;
}

function argKind(cmd: Command, parent: string): ArgKind | null {
  const first = cmd.registeredArguments[0]?.name();
  // `task show <id>`, `pool scale <id> <n>`: that kind's ids; every other id is a session's.
  if (first === 'id') return parent === 'task' || parent === 'pool' ? parent : 'session';
  if (first === 'project') return 'project';
  if (first === 'name' && (KINDS as readonly string[]).includes(parent)) return parent as ArgKind;
  return null;
}

const visible = (c: Command) => !(c as unknown as { _hidden?: boolean })._hidden;

/** The command tree as completion needs it, read from the program itself (so it never drifts). */
export function commandTree(program: Command): Node[] {
  const nodes: Node[] = [];
  const walk = (cmd: Command, path: string[]) => {
    const opts = cmd.options.filter((o) => !o.hidden);
    const spell = (o: (typeof opts)[number]) => [o.short, o.long].filter((x): x is string => !!x);
    const own = [...opts.flatMap(spell), '-h', '--help', ...(path.length === 0 ? ['-V', '--version'] : [])];
    const subs = cmd.commands.filter(visible);
    nodes.push({
      path: path.join(' '),
      subs: subs.flatMap((c) => [c.name(), ...c.aliases()]),
      opts: [...new Set(own)],
      valued: opts.filter((o) => o.required || o.optional).flatMap(spell),
      arg: argKind(cmd, path[path.length - 2] ?? ''),
    });
    for (const c of subs) for (const name of [c.name(), ...c.aliases()]) walk(c, [...path, name]);
  };
  walk(program, []);
  return nodes;
}

const q = (words: string[]) => `'${words.join(' ')}'`;

export function bashScript(nodes: Node[]): string {
  const cases = (pick: (n: Node) => string) =>
    nodes.map((n) => `    ${n.path === '' ? "''" : `'${n.path}'`}) echo ${pick(n)} ;;`).join('\n');
  return `# berth completion for bash (zsh: it runs under bashcompinit). Load with:
#   source <(berth completion bash)
_berth_subs() {
  case "$1" in
${cases((n) => q(n.subs))}
  esac
}
_berth_opts() {
  case "$1" in
${cases((n) => q(n.opts))}
  esac
}
_berth_valued() {
  case "$1" in
${cases((n) => q(n.valued))}
  esac
}
_berth_arg() {
  case "$1" in
${cases((n) => (n.arg ? n.arg : "''"))}
  esac
}
_berth() {
  # (not 'path': zsh ties that name to $PATH)
  local cur="\${COMP_WORDS[COMP_CWORD]}" at="" w i skip="" args=0 s
  for ((i = 1; i < COMP_CWORD; i++)); do
    w="\${COMP_WORDS[i]}"
    if [ -n "$skip" ]; then skip=""; continue; fi
    [ "$w" = "--" ] && return 0
    case "$w" in
      -*) for s in $(_berth_valued "$at") --socket; do [ "$w" = "$s" ] && skip=1; done; continue ;;
    esac
    if [ $args = 0 ] && [[ " $(_berth_subs "$at") " == *" $w "* ]]; then at="\${at:+$at }$w"; else args=$((args + 1)); fi
  done
  if [ -n "$skip" ]; then COMPREPLY=(); return 0; fi
  if [[ "$cur" == -* ]]; then
    COMPREPLY=($(compgen -W "$(_berth_opts "$at") --json --socket" -- "$cur"))
    return 0
  fi
  local words kind
  words="$(_berth_subs "$at")"
  kind="$(_berth_arg "$at")"
  if [ -n "$kind" ] && [ $args = 0 ]; then words="$words $(berth __complete "$kind" 2>/dev/null)"; fi
  COMPREPLY=($(compgen -W "$words" -- "$cur"))
}
complete -o default -F _berth berth
`;
}

export function zshScript(nodes: Node[]): string {
  return `#compdef berth
# berth completion for zsh. Load with:  source <(berth completion zsh)
# (or save it as _berth in a directory of your $fpath)
autoload -U +X bashcompinit && bashcompinit
${bashScript(nodes).split('\n').slice(2).join('\n')}`;
}

export function fishScript(nodes: Node[]): string {
  const lines = [
    '# berth completion for fish. Load with:  berth completion fish | source',
    '# (or save it as ~/.config/fish/completions/berth.fish)',
    'complete -c berth -f',
    'complete -c berth -l json -d "machine-readable JSON"',
    'complete -c berth -l socket -r -F -d "berthd socket"',
    // The words after `berth` that name a command (fish's own helpers look at one level only).
    'function __berth_path',
    '    set -l words (commandline -opc)[2..-1]',
    '    set -l path',
    '    for w in $words',
    '        string match -q -- "-*" $w; and continue',
    '        set -l cand (string join " " $path $w)',
    '        if contains -- $cand $__berth_paths',
    '            set path $path $w',
    '        else',
    '            break',
    '        end',
    '    end',
    '    string join " " $path',
    'end',
    'function __berth_at',
    '    set -l p (__berth_path)',
    '    test "$p" = "$argv[1]"',
    'end',
    `set -g __berth_paths ${nodes.filter((n) => n.path).map((n) => `'${n.path}'`).join(' ')}`,
  ];
  for (const n of nodes) {
    const cond = `-n '__berth_at "${n.path}"'`;
    if (n.subs.length) lines.push(`complete -c berth ${cond} -a ${q(n.subs)}`);
    if (n.arg) lines.push(`complete -c berth ${cond} -a '(berth __complete ${n.arg} 2>/dev/null)'`);
    for (const o of n.opts) {
      const flag = o.startsWith('--') ? `-l ${o.slice(2)}` : `-s ${o.slice(1)}`;
      lines.push(`complete -c berth ${cond} ${flag}${n.valued.includes(o) ? ' -r' : ''}`);
    }
  }
  return `${lines.join('\n')}\n`;
}

export function register(program: Command, { out, connect }: CliContext): void {
  program
    .command('completion <shell>')
    .description('print the shell completion script: bash, zsh or fish (e.g. source <(berth completion bash))')
    .action((shell: string) => {
      const sh = oneOf(shell, 'the shell', ['bash', 'zsh', 'fish'] as const);
      const nodes = commandTree(program);
      out.print(sh === 'bash' ? bashScript(nodes) : sh === 'zsh' ? zshScript(nodes) : fishScript(nodes));
    });

  // For the scripts above: names of sessions, projects, agents or images, ids of tasks or pools, one a line. Quiet on any
  // failure (no berthd, no permission): completion offers nothing rather than an error.
  program
    .command('__complete <kind>', { hidden: true })
    .action(async (kind: string, _o, cmd: Command) => {
      const k = oneOf(kind, 'the kind', KINDS);
      try {
        const c = connect(cmd);
        const names =
          k === 'session'
            ? (await c.sessions.list({ limit: 500 })).items.map((s) => s.name)
            : k === 'project'
              ? (await c.projects.list()).map((p) => p.name)
              : k === 'agent'
                ? (await c.agents.list()).map((a) => a.name)
                : k === 'task'
                  ? (await Promise.all(LIVE_TASK_STATES.map((state) => c.tasks.list({ state, limit: 200 })))).flatMap((p) => p.items.map((t) => String(t.id)))
                  : k === 'pool'
                    ? (await c.pools.list({})).map((p) => p.id)
                    : k === 'schedule'
                      ? (await c.schedules.list({})).map((s) => s.name)
                      : (await c.images.list()).map((i) => i.name);
        // bash's compgen -W expands the words it is given ($(…), `…`): only plain names go out,
        // whatever berthd answered (names and image references never hold anything else).
        out.print(ids(names.filter((n) => /^[A-Za-z0-9][A-Za-z0-9._:/@-]*$/.test(n))));
      } catch {
        // nothing to offer
      }
    });
}
