import type { Duplex } from 'node:stream';
import type { FastifyPluginAsync } from 'fastify';
import {
  BerthError,
  EXEC_UPGRADE,
  ExecFrame,
  ExecFrameReader,
  MAX_EXEC_FRAME,
  encodeExecFrame,
  execFrameJson,
  fromExecQuery,
  streamRoutes,
  toWireError,
  type ExecFrameType,
} from '@berth/client-sdk/protocol';
import type { ExecSession } from '../../runtime/port.js';
import type { SessionService } from '../../sessions/service.js';
import { validStreamParams } from '../dispatcher.js';
import { upgradeOf } from '../listener.js';
import { refuse, type OpenStreams } from '../wire.js';

function drained(socket: Duplex): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      socket.off('drain', done);
      socket.off('close', done);
      resolve();
    };
    socket.once('drain', done);
    socket.once('close', done);
  });
}

/**
 * The `sessions.exec` stream (protocol exec.ts): params from the query, checked like a method's;
 * refusals before the upgrade as every route answers them; then 101 and frames both ways until the
 * command ends (EXIT), fails, times out or berthd stops (ERROR), or the client goes (the command
 * is detached: stdin ends and a terminal hangs up).
 */
export const execRoutes: FastifyPluginAsync<{ sessions: SessionService; streams: OpenStreams }> = async (app, { sessions, streams }) => {
  app.get<{ Params: { id: string }; Querystring: Record<string, string | string[] | undefined> }>(streamRoutes['sessions.exec'].path, async (req, reply) => {
    const up = upgradeOf(req.raw);
    let timeoutSec: number | undefined;
    let exec: ExecSession;
    try {
      if (!up || String(req.headers.upgrade ?? '').toLowerCase() !== EXEC_UPGRADE) {
        throw new BerthError('INVALID_REQUEST', `sessions.exec takes over the connection: ask with Connection: Upgrade and Upgrade: ${EXEC_UPGRADE}`);
      }
      const p = validStreamParams('sessions.exec', fromExecQuery(req.params.id, req.query));
      timeoutSec = p.timeoutSec;
      exec = await sessions.execStream(p.id, {
        cmd: p.cmd,
        tty: p.tty === true,
        stdin: p.stdin === true,
        ...(p.env ? { env: p.env } : {}),
        ...(p.workdir ? { workdir: p.workdir } : {}),
        ...(p.cols !== undefined ? { cols: p.cols } : {}),
        ...(p.rows !== undefined ? { rows: p.rows } : {}),
      });
    } catch (err) {
      return refuse(reply, err);
    }
    reply.hijack();
    const { socket, head } = up;
    const log = req.log;
    reply.raw.detachSocket(socket as never);
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: ${EXEC_UPGRADE}\r\n\r\n`);
    log.debug({ url: req.url }, 'Started exec stream');

    let finished = false;
    let timer: NodeJS.Timeout | undefined;
    const send = (type: ExecFrameType, payload?: Uint8Array | object): boolean => socket.writable && socket.write(encodeExecFrame(type, payload));
    const finish = (type: typeof ExecFrame.EXIT | typeof ExecFrame.ERROR, payload: object) => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      untrack();
      send(type, payload);
      socket.end();
      exec.close();
      log.debug({ url: req.url, ...(type === ExecFrame.EXIT ? payload : { code: (payload as { error: { code: string } }).error.code }) }, 'Ended exec stream');
    };
    const fail = (err: unknown) => {
      if (!(err instanceof BerthError)) log.error({ err }, 'Exec stream failed');
      finish(ExecFrame.ERROR, { error: toWireError(err) });
    };
    const untrack = streams.add({ end: () => fail(new BerthError('DAEMON_UNREACHABLE', 'berthd is stopping')) });
    if (timeoutSec !== undefined) {
      const sec = timeoutSec;
      timer = setTimeout(() => fail(new BerthError('EXEC_TIMEOUT', `command did not finish within ${sec}s`, { details: { timeoutSec: sec } })), sec * 1000);
    }

    // Client → command, in order: stdin waits for the command to take it (the client is paused meanwhile).
    const frames = new ExecFrameReader();
    let chain: Promise<void> = Promise.resolve();
    let pending = 0;
    const then = (step: () => unknown) => {
      pending++;
      socket.pause();
      chain = chain
        .then(step)
        .catch(() => {})
        .finally(() => {
          if (--pending === 0 && !finished) socket.resume();
        })
        .then(() => {});
    };
    const onData = (chunk: Buffer) => {
      let got;
      try {
        got = frames.push(chunk);
      } catch (err) {
        return fail(new BerthError('INVALID_REQUEST', `not an exec frame stream: ${(err as Error).message}`));
      }
      for (const f of got) {
        if (f.type === ExecFrame.STDIN) {
          const data = Buffer.from(f.payload);
          then(() => exec.write(data));
        } else if (f.type === ExecFrame.STDIN_EOF) then(() => exec.endStdin());
        else if (f.type === ExecFrame.RESIZE) {
          let size: { cols?: unknown; rows?: unknown };
          try {
            size = execFrameJson(f.payload);
          } catch {
            return fail(new BerthError('INVALID_REQUEST', 'a resize frame carries JSON {cols, rows}'));
          }
          const ok = (n: unknown): n is number => Number.isInteger(n) && (n as number) >= 1 && (n as number) <= 10_000;
          if (!ok(size.cols) || !ok(size.rows)) return fail(new BerthError('INVALID_PARAMS', 'a resize needs whole numbers cols and rows from 1 to 10000'));
          const s = { cols: size.cols, rows: size.rows };
          then(() => exec.resize(s));
        } else return fail(new BerthError('INVALID_REQUEST', `frame type ${f.type} goes from berthd to the client, not back`));
      }
    };
    socket.on('data', onData);
    // The client's end of the connection, a half-close included, is the client gone (stdin has its
    // own frame): the command is detached, not left waiting on a terminal nobody will type into.
    const gone = () => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      untrack();
      exec.close();
      socket.destroy();
      log.debug({ url: req.url }, 'Exec client went away; command hung up');
    };
    socket.once('end', gone);
    socket.once('close', gone);
    if (head.length) onData(head);

    // Command → client, as it comes; the command is held back while the client reads slower.
    try {
      for await (const o of exec.output) {
        if (finished) break;
        const type = o.stream === 'stderr' ? ExecFrame.STDERR : ExecFrame.STDOUT;
        for (let i = 0; i < o.data.length; i += MAX_EXEC_FRAME) {
          if (!send(type, o.data.subarray(i, i + MAX_EXEC_FRAME)) && !finished) await drained(socket);
        }
      }
      if (!finished) finish(ExecFrame.EXIT, { exitCode: await exec.exitCode() });
    } catch (err) {
      fail(err);
    }
  });
};
