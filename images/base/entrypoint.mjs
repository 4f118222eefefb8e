#!/usr/bin/env node
// berth's in-container entrypoint: runs the agent command as a child in its own process group,
// passes its output through, forwards SIGTERM/SIGINT to the whole group, waits BERTH_GRACE_SEC, then
// SIGKILLs it, and exits with the agent's own exit code. A tiny health server on BERTH_HEALTH_PORT
// (3999) reports whether the agent is alive and when it last wrote output; HEALTHCHECK asks it.
import { spawn } from 'node:child_process';
import { createServer } from 'node:http';
import { constants } from 'node:os';

const argv = process.argv.slice(2);
if (argv[0] === '--') argv.shift();
const cmd = argv.length ? argv : ['bash'];
const grace = Number(process.env.BERTH_GRACE_SEC ?? 10) * 1000;
const port = Number(process.env.BERTH_HEALTH_PORT ?? 3999);
const started = Date.now();
let lastOutputAt = null;
let exited = null;

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
