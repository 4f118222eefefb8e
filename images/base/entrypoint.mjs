#!/usr/bin/env node
// berth's in-container entrypoint: runs the agent command as a child in its own process group,
// passes its output through, forwards SIGTERM/SIGINT to the whole group, waits BERTH_GRACE_SEC, then
// SIGKILLs it, and exits with the agent's own exit code. A tiny health server on BERTH_HEALTH_PORT
// (3999) reports whether the agent is alive and when it last wrote output; HEALTHCHECK asks it.
// In a berth session (CLAUDE_BRIDGE_SOCKET set) it also forwards 127.0.0.1:BERTH_BRIDGE_PORT (3998)
// to the Claude bridge socket, which is where the image's ANTHROPIC_BASE_URL points.
import { spawn } from 'node:child_process';
import { createServer } from 'node:http';
import { connect, createServer as createTcpServer } from 'node:net';
import { constants } from 'node:os';

const argv = process.argv.slice(2);
if (argv[0] === '--') argv.shift();
const cmd = argv.length ? argv : ['bash'];
const grace = Number(process.env.BERTH_GRACE_SEC ?? 10) * 1000;
const port = Number(process.env.BERTH_HEALTH_PORT ?? 3999);
const started = Date.now();
let lastOutputAt = null;
let exited = null;

/**
 * The Claude bridge on loopback: each TCP connection is piped byte for byte to the Unix socket berthd
 * serves, so HTTP (SSE included) passes untouched and works with `--network none`. Loopback only: the
 * socket relays the host's credential, so it must not be reachable from another container. When the
 * socket cannot be reached the client gets a Messages API error, which Claude Code shows (and retries:
 * a berthd that comes back serves the next attempt, since the socket path stays the same).
 */
function bridgeForwarder(socketPath) {
  const fix = 'is berthd running? `berth status` on the host; the bridge comes back when berthd restarts, no container restart needed';
  const why = (err) =>
    err.code === 'ENOENT'
      ? `the bridge socket ${socketPath} does not exist: ${fix}`
      : err.code === 'ECONNREFUSED'
        ? `berthd is not answering on ${socketPath}: ${fix}`
        : `cannot reach ${socketPath} (${err.code ?? err.message}): ${fix}`;
  const badGateway = (client, err) => {
    const body = JSON.stringify({ type: 'error', error: { type: 'api_error', message: `berth bridge: ${why(err)}` } });
    // Drain what the client sends so closing does not reset the connection before it reads the answer.
    client.on('data', () => {});
    client.end(
      `HTTP/1.1 502 Bad Gateway\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
    );
    setTimeout(() => client.destroy(), 5000).unref();
  };
  // Half-open on both sides, so an end in one direction is passed on (by pipe) without cutting the
  // other; an error on either side destroys both.
  return createTcpServer({ allowHalfOpen: true }, (client) => {
    const upstream = connect({ path: socketPath, allowHalfOpen: true });
    let connected = false;
    const close = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on('error', close);
    client.on('close', (hadError) => (hadError || !connected) && upstream.destroy());
    upstream.on('connect', () => {
      connected = true;
      client.pipe(upstream);
      upstream.pipe(client);
    });
    upstream.on('error', (err) => (connected ? close() : badGateway(client, err)));
    upstream.on('close', (hadError) => hadError && connected && client.destroy());
  });
}

const bridgeSocket = process.env.CLAUDE_BRIDGE_SOCKET;
if (bridgeSocket) {
  const bridgePort = Number(process.env.BERTH_BRIDGE_PORT ?? 3998);
  const forwarder = bridgeForwarder(bridgeSocket);
  // Listening before the agent starts, so its first request finds the port open.
  await new Promise((resolve) => {
    forwarder.once('error', (err) => {
      process.stderr.write(`berth entrypoint: Claude bridge forwarder on 127.0.0.1:${bridgePort}: ${err.message}\n`);
      resolve();
    });
    forwarder.listen(bridgePort, '127.0.0.1', resolve);
  });
  forwarder.on('error', () => {});
  forwarder.unref();
}

const child = spawn(cmd[0], cmd.slice(1), { stdio: ['inherit', 'pipe', 'pipe'], detached: true });
child.stdout.on('data', (c) => {
  lastOutputAt = new Date().toISOString();
  process.stdout.write(c);
});
child.stderr.on('data', (c) => {
  lastOutputAt = new Date().toISOString();
  process.stderr.write(c);
});

const group = (sig) => {
  try {
    process.kill(-child.pid, sig);
  } catch {
    // already gone
  }
};
let killTimer = null;
for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP']) {
  process.on(sig, () => {
    group(sig);
    killTimer ??= setTimeout(() => group('SIGKILL'), grace);
    killTimer.unref();
  });
}

const health = createServer((req, res) => {
  const alive = exited === null;
  res.writeHead(alive ? 200 : 503, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ alive, pid: child.pid, command: cmd, startedAt: new Date(started).toISOString(), lastOutputAt }));
});
health.on('error', (err) => process.stderr.write(`berth entrypoint: health server: ${err.message}\n`));
health.listen(port, '0.0.0.0');
health.unref();

child.on('error', (err) => {
  process.stderr.write(`berth entrypoint: cannot run ${cmd[0]}: ${err.message}\n`);
  process.exit(127);
});
child.on('exit', (code, signal) => {
  exited = code ?? 128 + (constants.signals[signal] ?? 9);
  // Reap the rest of the group, then leave with the agent's own status.
  group('SIGKILL');
  process.exitCode = exited;
  setImmediate(() => process.exit(exited));
});
