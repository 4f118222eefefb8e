import { existsSync, readFileSync, statSync, type Stats } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { BerthError } from './protocol/index.js';

export const SYSTEM_SOCKET = '/run/berth/berth.sock';

/**
 * Where berthd listens: $BERTH_SOCKET, else $BERTH_HOME/berth.sock, else ~/.berth/berth.sock;
 * when that does not exist but the system service's socket does, the system one. A system socket
 * behind a directory we may not enter counts as there: its EACCES says which group to join.
 */
export function defaultSocketPath(env: NodeJS.ProcessEnv = process.env, systemSocket = SYSTEM_SOCKET): string {
  if (env.BERTH_SOCKET) return env.BERTH_SOCKET;
  const home = env.BERTH_HOME || join(env.HOME || homedir(), '.berth');
  const user = join(home, 'berth.sock');
  if (!env.BERTH_HOME && !existsSync(user) && presentOrClosed(systemSocket)) return systemSocket;
  return user;
}

function presentOrClosed(path: string): boolean {
  try {
    statSync(path);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EACCES';
  }
}

/**
 * Whether a berthd is starting on `socketPath`: the pid file it writes before binding names a live
 * process that is berthd (where /proc says so).
 */
export function daemonStarting(socketPath: string): boolean {
  let pid: number;
  try {
    pid = Number(readFileSync(`${socketPath}.pid`, 'utf8').trim());
  } catch {
    return false;
  }
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'latin1').includes('berthd');
  } catch {
    return true; // no /proc (macOS): a live pid is the best we know
  }
}

export const NOT_LISTENING = new Set(['ENOENT', 'ECONNREFUSED']);
/** Failures to connect at all (nothing was sent): DAEMON_UNREACHABLE. Any other socket failure is CONNECTION_LOST. */
const CANNOT_CONNECT = new Set(['ENOENT', 'ECONNREFUSED', 'ENOTSOCK', 'ENOTDIR', 'EACCES', 'EPERM', 'ENAMETOOLONG']);


/** A socket-level failure on `socketPath` as a BerthError: never INTERNAL_ERROR, which is berthd's own failing. */
export function transportError(socketPath: string, err: Error & { code?: string }): BerthError {
  if (err instanceof BerthError) return err;
  if (err.name === 'AbortError') return new BerthError('ABORTED', 'the call was cancelled', { cause: err });
  const st = (() => {
    try {
      return statSync(socketPath);
    } catch {
      return null;
    }
  })();
  if (err.code === 'EACCES' || err.code === 'EPERM') {
    // berthd runs as another user (the system unit): its socket is for its group. When the
    // directory keeps us from even seeing the socket, the directory's group is the one to join.
    const dir = st ? null : statOrNull(dirname(socketPath));
    const whose = st ? ` (owner uid ${st.uid}, group gid ${st.gid}, mode ${(st.mode & 0o777).toString(8)})` : '';
    const gid = st ? ((st.mode & 0o060) === 0o060 ? st.gid : null) : dir && dir.mode & 0o010 ? dir.gid : null;
    const name = gid === null ? null : groupName(gid);
    const howToJoin = name ? `${name}: \`sudo usermod -aG ${name} $USER\`` : `gid ${gid} (\`getent group ${gid}\` names it): \`sudo usermod -aG NAME $USER\``;
    return new BerthError('DAEMON_UNREACHABLE', `no permission to use berthd's socket ${socketPath}${whose}`, {
      hint: gid !== null
        ? `berthd runs as another user and lets its group in: join group ${howToJoin}, then log in again; or run a berthd of your own (\`npm start\`; BERTH_SOCKET or --socket).`
        : 'berthd runs as another user and its socket (or the directory it is in) is for that user only: run berth as that user, or run a berthd of your own (`npm start`; BERTH_SOCKET or --socket).',
      details: { socket: socketPath, errno: err.code },
      cause: err,
    });
  }
  if (st && !st.isSocket() && (err.code === 'ECONNREFUSED' || err.code === 'ENOTSOCK')) {
    return new BerthError('DAEMON_UNREACHABLE', `${socketPath} is not a socket (it is a ${st.isDirectory() ? 'directory' : 'file'})`, {
      hint: 'Point --socket or BERTH_SOCKET at berthd\'s socket (berthd prints it when it starts; ~/.berth/berth.sock by default).',
      details: { socket: socketPath, errno: err.code },
      cause: err,
    });
  }
  if (err.code && CANNOT_CONNECT.has(err.code)) {
    return new BerthError('DAEMON_UNREACHABLE', `cannot reach berthd at ${socketPath}: ${err.code}`, {
      details: { socket: socketPath, errno: err.code },
      cause: err,
    });
  }
  return new BerthError('CONNECTION_LOST', `the connection to berthd at ${socketPath} broke before its answer: ${err.code ?? err.message}`, {
    details: { socket: socketPath, errno: err.code ?? null },
    cause: err,
  });
}

function statOrNull(path: string): Stats | null {
  try {
    return statSync(path);
  } catch {
    return null;
  }
}

/** The name of group `gid` in /etc/group, or null (the hint then says how to look it up). */
function groupName(gid: number): string | null {
  try {
    for (const line of readFileSync('/etc/group', 'utf8').split('\n')) {
      const f = line.split(':');
      if (f.length >= 3 && Number(f[2]) === gid && /^[A-Za-z_][A-Za-z0-9_.-]*\$?$/.test(f[0]!)) return f[0]!;
    }
  } catch {
    // no /etc/group (macOS keeps groups in its directory service)
  }
  return null;
}
