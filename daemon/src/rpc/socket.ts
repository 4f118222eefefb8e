import { chmod, chown, lstat, mkdir, stat, unlink } from 'node:fs/promises';
import { request } from 'node:http';
import { connect } from 'node:net';
import { dirname } from 'node:path';
import { BerthError } from '@berth/client-sdk/protocol';
import type { SocketAccess } from '../config/socket-access.js';

/** What socket preparation logs through: berthd's logger, or boot's buffer before the logger is loaded. */
export interface WarnLog {
  warn(obj: Record<string, unknown>, msg: string): void;
}

/** The default: berthd's user only. */
export const OWNER_ONLY: SocketAccess = { mode: 0o600, group: null };

/** sun_path holds 108 bytes on Linux and 104 on macOS, each including the terminating NUL. */
export const MAX_SOCKET_PATH_BYTES = process.platform === 'linux' ? 107 : 103;

type Probe = { state: 'absent' } | { state: 'stale' } | { state: 'live'; pid: number | null };

function probe(path: string, timeoutMs = 1000): Promise<Probe> {
  return new Promise((resolve) => {
    const sock = connect(path);
    const timer = setTimeout(() => {
      sock.destroy();
      resolve({ state: 'live', pid: null });
    }, timeoutMs);
    sock.once('connect', () => {
      clearTimeout(timer);
      sock.destroy();
      void askPid(path).then((pid) => resolve({ state: 'live', pid }));
    });
    sock.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      resolve(err.code === 'ENOENT' ? { state: 'absent' } : { state: 'stale' });
    });
  });
}

/** Asks whoever holds the socket for its pid via daemon.status; null if it does not answer like berthd. */
function askPid(path: string): Promise<number | null> {
  return new Promise((resolve) => {
    const body = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'daemon.status' });
    const req = request(
      { socketPath: path, path: '/rpc', method: 'POST', headers: { 'content-type': 'application/json' }, timeout: 2000 },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => {
          try {
            const pid = (JSON.parse(text) as { result?: { pid?: unknown } }).result?.pid;
            resolve(typeof pid === 'number' ? pid : null);
          } catch {
            resolve(null);
          }
        });
      },
    );
    req.on('error', () => resolve(null));
    req.on('timeout', () => {
      req.destroy();
      resolve(null);
    });
    req.end(body);
  });
}

/**
 * Makes `path` ready for listen(): refuses an over-long path, creates its directory 0700 (opened to
 * the socket's group when it has one, below), replaces a socket left by a crashed daemon, and
 * refuses when a live daemon holds it (naming its pid).
 */
export async function prepareSocketPath(path: string, log: WarnLog, access: SocketAccess = OWNER_ONLY): Promise<void> {
  const bytes = Buffer.byteLength(path);
  if (bytes > MAX_SOCKET_PATH_BYTES) {
    throw new BerthError(
      'SOCKET_PATH_TOO_LONG',
      `socket path is ${bytes} bytes, over the ${MAX_SOCKET_PATH_BYTES}-byte limit of this OS: ${path}`,
      { details: { path, bytes, max: MAX_SOCKET_PATH_BYTES } },
    );
  }
  const dir = dirname(path);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  if (access.mode & 0o060) await openToGroup(dir, access, log);
  else {
    const dirMode = (await stat(dir)).mode & 0o777;
    if (dirMode & 0o077) {
      log.warn({ dir, mode: dirMode.toString(8) }, `Socket directory ${dir} is accessible to other users; the socket itself is 0600`);
    }
  }

  let st;
  try {
    st = await lstat(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  if (!st.isSocket()) {
    throw new BerthError('SOCKET_PATH_NOT_SOCKET', `${path} exists and is not a socket; refusing to replace it`, {
      details: { path },
    });
  }
  const p = await probe(path);
  if (p.state === 'live') {
    throw new BerthError(
      'SOCKET_IN_USE',
      p.pid !== null
        ? `another berthd (pid ${p.pid}) is serving ${path}`
        : `another process is listening on ${path} (it did not say its pid)`,
      { details: { path, pid: p.pid } },
    );
  }
  if (p.state === 'stale') {
    log.warn({ path }, 'Replacing stale socket left by a daemon that did not shut down cleanly');
    await unlink(path).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') throw err;
    });
  }
}

/**
 * A group socket is only of use if the group can pass through its directory. A private directory
 * of berthd's own (0700: the system unit's /run/berth, ~/.berth) is given to the group with search
 * only (0710: members reach the socket, list nothing); any other directory is left as it is, with a
 * warning when the group cannot get through it.
 */
async function openToGroup(dir: string, access: SocketAccess, log: WarnLog): Promise<void> {
  const gid = access.group?.gid ?? process.getgid?.() ?? 0;
  const st = await stat(dir);
  const mode = st.mode & 0o777;
  const mine = st.uid === process.getuid?.();
  if (st.gid === gid ? mode & 0o010 : mode & 0o001) return;
  if (mine && (st.gid === gid || (mode & 0o077) === 0)) {
    if (st.gid !== gid) await chown(dir, -1, gid);
    await chmod(dir, mode | 0o010);
    return;
  }
  log.warn(
    { dir, mode: mode.toString(8), uid: st.uid, gid: st.gid, socketGid: gid },
    `Members of the socket's group (gid ${gid}) cannot pass through ${dir}; give that directory to the group (chgrp, g+x) or put the socket elsewhere`,
  );
}
