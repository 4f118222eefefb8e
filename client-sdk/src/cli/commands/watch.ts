import type { Command } from 'commander';
import type { BerthClient } from '../../client.js';
import { BerthError, type BerthEvent } from '../../protocol/index.js';
import type { CliContext } from '../context.js';
import { collect, usageError, wholeNumber } from '../context.js';
import { cut, jsonText, line } from '../output.js';

type NotificationEvent = Extract<BerthEvent, { type: 'notification' }>;

/** The connection went away (berthd stopped or restarted), as opposed to a refusal worth reporting. */
function lostDaemon(err: unknown): boolean {
  if (err instanceof BerthError) return err.code === 'DAEMON_UNREACHABLE' || err.code === 'CONNECTION_LOST' || err.code === 'TIMEOUT';
  const code = (err as NodeJS.ErrnoException)?.code;
  return code === 'ECONNRESET' || code === 'EPIPE' || code === 'ECONNREFUSED' || code === 'ENOENT' || code === 'ERR_STREAM_PREMATURE_CLOSE';
}

const pause = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });

/**
 * Every event of `/events` until `signal` aborts, from `since` when given. When berthd goes away it
 * waits for it to come back and goes on: from the last event it saw when it is the same daemon, from
 * the start of its buffer when it is a new one (a new daemon numbers its events from 1 again, and
 * everything it buffered happened while we were away). Only the first connection's failure is thrown.
 */
export async function* followEvents(
  c: BerthClient,
  signal: AbortSignal,
  onState: (state: 'lost' | 'back') => void = () => {},
  first?: number,
): AsyncGenerator<BerthEvent> {
  let daemon: string | null = null;
  let lastSeq: number | undefined;
  let lost = false;
  for (let wait = 250; !signal.aborted; ) {
    try {
      const st = await c.daemon.status();
      const ident = `${st.pid} ${st.startedAt}`;
      const since = daemon === null ? first : ident === daemon ? lastSeq : 0;
      daemon = ident;
      if (lost) onState('back');
      lost = false;
      wait = 250;
      // This loop does its own reconnecting, to say when berthd went away and came back.
      for await (const e of c.events({ ...(since !== undefined ? { since } : {}), signal, reconnect: false })) {
        if (e.type === 'gap') continue;
        lastSeq = e.seq;
        yield e;
      }
    } catch (err) {
      if (signal.aborted) return;
      if (daemon === null || !lostDaemon(err)) throw err;
    }
    if (signal.aborted) return;
    if (!lost) onState('lost');
    lost = true;
    await pause(wait, signal);
    wait = Math.min(wait * 2, 2000);
  }
}

/** The `notification` events, as followEvents gives them. */
export async function* followNotifications(
  c: BerthClient,
  signal: AbortSignal,
  onState: (state: 'lost' | 'back') => void = () => {},
): AsyncGenerator<NotificationEvent> {
  for await (const e of followEvents(c, signal, onState)) if (e.type === 'notification') yield e;
}

/** `--filter key=value`: type (a `*` matches any run, `session.*`), session (id or name), project. */
export type EventFilters = { type: RegExp[]; session: string[]; project: string[] };

export function parseEventFilters(specs: string[]): EventFilters {
  const f: EventFilters = { type: [], session: [], project: [] };
  for (const spec of specs) {
    const i = spec.indexOf('=');
    const key = i > 0 ? spec.slice(0, i) : '';
    const value = spec.slice(i + 1);
    if (!value || (key !== 'type' && key !== 'session' && key !== 'project')) {
      throw usageError(`--filter takes type=…, session=… or project=…, got ${JSON.stringify(spec)}`);
    }
    if (key === 'type') f.type.push(new RegExp(`^${value.split('*').map((p) => p.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*')}$`));
    else f[key].push(value);
  }
  return f;
}

/** The session and project an event is about, where it names them. */
function subjectOf(e: BerthEvent): { ids: string[]; projects: string[] } {
  const d = e.data as Record<string, unknown>;
  const s = (d.session ?? null) as { id?: string; name?: string; project?: string } | null;
  const ids = [s?.id, s?.name, e.type.startsWith('session.') ? (d.id as string) : undefined, e.type.startsWith('session.') ? (d.name as string) : undefined];
  const projects = [s?.project, (d.project as { name?: string } | undefined)?.name, e.type.startsWith('project.') ? (d.name as string) : undefined];
  return { ids: ids.filter((x): x is string => !!x), projects: projects.filter((x): x is string => !!x) };
}

/** Filters of one key are alternatives; different keys must all match (docker's rule). */
export function matchesFilters(e: BerthEvent, f: EventFilters): boolean {
  if (f.type.length && !f.type.some((r) => r.test(e.type))) return false;
  if (!f.session.length && !f.project.length) return true;
  const sub = subjectOf(e);
  if (f.session.length && !f.session.some((x) => sub.ids.some((id) => id === x || (x.length >= 4 && /^[0-9a-f]+$/.test(x) && id.startsWith(x))))) return false;
  if (f.project.length && !f.project.some((x) => sub.projects.includes(x))) return false;
  return true;
}

/** One line for a person: what happened to what. */
export function describeEvent(e: BerthEvent): string {
  switch (e.type) {
    case 'session.state':
      return `${e.data.session.name} ${e.data.previous} -> ${e.data.session.state}${e.data.session.state === 'exited' ? ` (${e.data.session.exitCode})` : ''}`;
    case 'session.created':
      return `${e.data.session.name} (${e.data.session.project}, agent ${e.data.session.agent})`;
    case 'session.activity':
      return `${e.data.name} ${e.data.previous ?? '-'} -> ${e.data.activity.state}`;
    case 'notification':
      return `${e.data.session.name} ${e.data.kind}: ${e.data.message}`;
    case 'config.changed': {
      const d = e.data;
      const parts = [`applied: ${d.keys.join(', ') || 'nothing'}`];
      if (d.restartNeeded.length) parts.push(`needs a restart: ${d.restartNeeded.join(', ')}`);
      if (d.secrets.length) parts.push(`secrets changed: ${d.secrets.join(', ')}`);
      return `${d.trigger}: ${parts.join('; ')}`;
    }
    case 'config.invalid':
      return `${e.data.trigger}: ${e.data.key} not applied (running configuration kept): ${cut(e.data.message, 200)}`;
    default:
      return cut(jsonText(e.data), 120);
  }
}

export function register(program: Command, { out, connect }: CliContext): void {
  program
    .command('events')
    .description('print berthd\'s events live (sessions, projects, agents, images, the engine); survives a daemon restart')
    .option('--since <seq>', 'from this event number on (what berthd still keeps of them)')
    .option('--filter <key=value>', 'type=session.state (a * matches: session.*), session=NAME|ID, project=NAME; repeatable', collect, [])
    .action(async (o: { since?: string; filter: string[] }, cmd: Command) => {
      const since = o.since !== undefined ? wholeNumber(o.since, '--since') : undefined;
      const filters = parseEventFilters(o.filter);
      const c = connect(cmd);
      const ctl = new AbortController();
      const onSig = () => ctl.abort();
      process.once('SIGINT', onSig);
      const onState = (state: 'lost' | 'back') => {
        if (!out.json) out.printErr(state === 'lost' ? 'berthd went away; waiting for it to come back\n' : 'berthd is back\n');
      };
      try {
        for await (const e of followEvents(c, ctl.signal, onState, since)) {
          if (!matchesFilters(e, filters)) continue;
          if (out.json) out.printJson(e);
          else out.print(line`${e.ts}  ${String(e.seq).padStart(5)}  ${e.type.padEnd(16)}  ${describeEvent(e)}` + '\n');
        }
      } finally {
        process.off('SIGINT', onSig);
      }
    });

  program
    .command('watch')
    .description('print notifications live: waiting for input, stuck, non-zero exit, failed, over budget; survives a daemon restart')
    .action(async (_o, cmd: Command) => {
      const c = connect(cmd);
      const ctl = new AbortController();
      const onSig = () => ctl.abort();
      process.once('SIGINT', onSig);
      const onState = (state: 'lost' | 'back') => {
        if (out.json) return;
        out.printErr(state === 'lost' ? 'berthd went away; waiting for it to come back\n' : 'berthd is back; watching\n');
      };
      try {
        for await (const e of followNotifications(c, ctl.signal, onState)) {
          if (out.json) {
            out.printJson(e);
            continue;
          }
          const n = e.data;
          out.print(line`${n.ts}  ${n.kind.padEnd(13)}  ${n.session.name}  ${n.message}` + '\n');
        }
      } finally {
        process.off('SIGINT', onSig);
      }
    });
}
