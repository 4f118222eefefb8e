import type { Command } from 'commander';
import type { BerthClient } from '../../client.js';
import { BerthError, type BerthEvent } from '../../protocol/index.js';
import type { CliContext } from '../context.js';
import { line } from '../output.js';

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
 * The `notification` events of `/events` until `signal` aborts. When berthd goes away it waits for
 * it to come back and goes on: from the last event it saw when it is the same daemon, from the start
 * of its buffer when it is a new one (a new daemon numbers its events from 1 again, and everything
 * it buffered happened while we were away). Only the first connection's failure is thrown.
 */
export async function* followNotifications(
  c: BerthClient,
  signal: AbortSignal,
  onState: (state: 'lost' | 'back') => void = () => {},
): AsyncGenerator<NotificationEvent> {
  let daemon: string | null = null;
  let lastSeq: number | undefined;
  let lost = false;
  for (let wait = 250; !signal.aborted; ) {
    try {
      const st = await c.daemon.status();
      const ident = `${st.pid} ${st.startedAt}`;
      const since = daemon === null ? undefined : ident === daemon ? lastSeq : 0;
      daemon = ident;
      if (lost) onState('back');
      lost = false;
      wait = 250;
      // This loop does its own reconnecting, to say when berthd went away and came back.
      for await (const e of c.events({ ...(since !== undefined ? { since } : {}), signal, reconnect: false })) {
        if (e.type === 'gap') continue;
        lastSeq = e.seq;
        if (e.type === 'notification') yield e;
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

export function register(program: Command, { out, connect }: CliContext): void {
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
