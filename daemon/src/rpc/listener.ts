import { chmod, chown, unlink, writeFile } from 'node:fs/promises';
import { createServer, ServerResponse, type IncomingMessage, type RequestListener, type Server } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { BerthError } from '@berth/client-sdk/protocol';
import type { SocketAccess } from '../config/socket-access.js';
import { OWNER_ONLY, prepareSocketPath, type WarnLog } from './socket.js';

/** Requests held while berthd starts; past this, a caller is told to come back instead of queueing memory. */
const MAX_HELD = 1024;

/** The pid file next to the socket: `berth` waits for a daemon that is starting instead of failing at once. */
export const pidFileOf = (socket: string) => `${socket}.pid`;

/** The connection of a request that asked for an upgrade (sessions.exec), by its request. */
const upgrades = new WeakMap<IncomingMessage, { socket: Duplex; head: Buffer }>();

/**
 * The connection under a request that asked to upgrade it, for the route that takes it over
 * (it answers 101 itself); null for an ordinary request.
 */
export function upgradeOf(req: IncomingMessage): { socket: Duplex; head: Buffer } | null {
  return upgrades.get(req) ?? null;
}

/**
 * A request that asked to upgrade its connection, made into an ordinary request and response:
 * node's http server hands those to its 'upgrade' event instead of its handler, and fastify routes
 * only the handler's (the way @fastify/websocket brings them to fastify). So routing, params and
 * refusals are the same as for every route; a route that accepts takes the socket (upgradeOf).
 * Whatever is answered without upgrading closes the connection: its HTTP parser is gone.
 */
function asRequest(req: IncomingMessage, socket: Duplex, head: Buffer): [IncomingMessage, ServerResponse] {
  upgrades.set(req, { socket, head });
  socket.on('error', () => socket.destroy());
  const res = new ServerResponse(req);
  res.shouldKeepAlive = false;
  res.assignSocket(socket as Socket);
  res.once('finish', () => socket.end());
  return [req, res];
}

/**
 * berthd's Unix socket, bound before the rest of the daemon is loaded. Until a handler is attached,
 * every request is held (not refused): a client that connects while berthd starts gets its answer
 * once the daemon is up, or the startup error if it never comes up. Light on purpose (node's http
 * and the protocol's errors only): it is what makes a restarted berthd reachable in milliseconds.
 */
export class SocketListener {
  private handler: RequestListener | null = null;
  private held: [IncomingMessage, ServerResponse][] = [];
  private failure: BerthError | null = null;
  private closing = false;

  private constructor(
    readonly path: string,
    readonly server: Server,
  ) {}

  /**
   * Prepares the path (stale socket replaced, live holder refused), writes the pid file, listens with
   * mode 0600, then hands socket and pid file to the group `access` names (0660 and 0640).
   */
  static async open(path: string, log: WarnLog, access: SocketAccess = OWNER_ONLY): Promise<SocketListener> {
    await prepareSocketPath(path, log, access);
    let self!: SocketListener;
    const server = createServer((req, res) => self.dispatch(req, res));
    server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => self.dispatch(...asRequest(req, socket, head)));
    // fastify's own defaults for a server it would create: no request deadline, long keep-alive.
    server.keepAliveTimeout = 60_000;
    server.requestTimeout = 0;
    server.setTimeout(0);
    self = new SocketListener(path, server);
    // Written before listen: a client that finds no socket yet, or the stale one, sees a daemon starting.
    await writeFile(pidFileOf(path), `${process.pid}\n`, { mode: 0o600 });
    try {
      await shareWithGroup(pidFileOf(path), access, access.mode & 0o060 ? 0o640 : 0o600);
    } catch (err) {
      await unlink(pidFileOf(path)).catch(() => {});
      throw err;
    }
    // The socket must never exist with looser permissions, even for a moment.
    const oldUmask = process.umask(0o177);
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(path, () => {
          server.off('error', reject);
          resolve();
        });
      });
    } catch (err) {
      await unlink(pidFileOf(path)).catch(() => {});
      if ((err as NodeJS.ErrnoException).code === 'EADDRINUSE') {
        // Another daemon won the race between our check and listen(): report it like any live holder.
        await prepareSocketPath(path, log, access);
      }
      throw err;
    } finally {
      process.umask(oldUmask);
    }
    try {
      await shareWithGroup(path, access, access.mode);
    } catch (err) {
      await self.close();
      throw err;
    }
    return self;
  }

  /** Hands every request, the held ones first, to `handler` (fastify's); upgrade requests too (upgradeOf). */
  attach(handler: RequestListener): void {
    this.handler = handler;
    const held = this.held;
    this.held = [];
    for (const [req, res] of held) if (!res.destroyed) handler(req, res);
  }

  /** berthd will not come up: held and later requests get `err`, until close(). */
  fail(err: unknown): void {
    this.failure =
      err instanceof BerthError ? err : new BerthError('INTERNAL_ERROR', `berthd failed to start: ${(err as Error)?.message ?? String(err)}`);
    const held = this.held;
    this.held = [];
    for (const [req, res] of held) this.refuse(req, res, this.failure);
  }

  /** Stops accepting, waits for requests in flight, removes the socket and the pid file. */
  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    for (const [req, res] of this.held.splice(0)) {
      this.refuse(req, res, new BerthError('DAEMON_UNREACHABLE', 'berthd is stopping'));
    }
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeIdleConnections();
    await closed;
    await unlink(this.path).catch(() => {});
    await unlink(pidFileOf(this.path)).catch(() => {});
  }

  private dispatch(req: IncomingMessage, res: ServerResponse): void {
    // Keep-alive connections that finish a request while stopping are closed, not kept for the next one.
    if (this.closing) res.once('finish', () => this.server.closeIdleConnections());
    if (this.failure) return this.refuse(req, res, this.failure);
    if (this.handler) return this.handler(req, res);
    if (this.held.length >= MAX_HELD) {
      return this.refuse(req, res, new BerthError('DAEMON_UNREACHABLE', `berthd is starting and already holds ${MAX_HELD} requests; retry`));
    }
    this.held.push([req, res]);
  }

  /** A JSON-RPC error (id null) for /rpc, `{error}` elsewhere; 503 either way, connection closed. */
  private refuse(req: IncomingMessage, res: ServerResponse, err: BerthError): void {
    req.resume();
    const data = { message: err.message, ...err.toData() };
    const body = req.url?.startsWith('/rpc')
      ? { jsonrpc: '2.0', id: null, error: { code: err.rpcCode, message: err.message, data: err.toData() } }
      : { error: data };
    if (!res.headersSent) res.writeHead(503, { 'content-type': 'application/json; charset=utf-8', connection: 'close' });
    res.end(JSON.stringify(body));
  }
}

/** The group first, then the mode: the file is never open to a group it was not meant for. */
async function shareWithGroup(file: string, access: SocketAccess, mode: number): Promise<void> {
  if (access.group) {
    try {
      await chown(file, -1, access.group.gid);
    } catch (err) {
      const name = access.group.name ?? `gid ${access.group.gid}`;
      throw new BerthError('CONFIG_INVALID', `berthd (uid ${process.getuid?.()}) may not give ${file} to group ${name}: ${(err as NodeJS.ErrnoException).code ?? err}`, {
        hint: `Run berthd as root (the system unit) or as a member of ${name}, or unset BERTH_SOCKET_GROUP.`,
        details: { key: 'socketGroup', env: 'BERTH_SOCKET_GROUP', value: name },
        cause: err,
      });
    }
  }
  await chmod(file, mode);
}
