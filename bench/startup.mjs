// bench/startup: how soon a (re)started berthd answers. Each round restarts, in turn, a bare node
// process serving JSON-RPC on a Unix socket (the floor: node's own start), the berthd before the
// listen-first change (--before REV) and this berthd, each on its own home that keeps its state
// across restarts. Measured from spawn: when the socket first accepts a connection, and when
// daemon.status is answered (a client polling every 5 ms, as a restarting user's CLI would).
// Also counted: how many of those polls this berthd answered DAEMON_UNREACHABLE-style (refused or
// no socket) and whether `berth status` run at the same moment as berthd (a user's
// `systemctl restart berthd; berth status`; each side's own CLI) gets its answer. Rounds run idle,
// then with the cores kept busy by spinning processes (one per core).
// Usage: npm run bench:startup [-- --n 10 --before REV]
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { connect } from 'node:net';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { arg, buildRevision, pct, prepareEngine, root } from './lib.mjs';

const N = arg('n', 10);
const bi = process.argv.indexOf('--before');
const BEFORE = bi > 0 ? process.argv[bi + 1] : 'e9aa3e6';

prepareEngine();
const old = buildRevision(BEFORE);

const BARE = `
const http = require('node:http');
try { require('node:fs').unlinkSync(process.argv[1]); } catch {}
http.createServer((req, res) => { req.resume(); req.on('end', () => res.end(JSON.stringify({ jsonrpc: '2.0', id: 1, result: { pid: process.pid } }))); })
  .listen(process.argv[1]);
process.on('SIGTERM', () => process.exit(0));`;

const sides = [
  { label: 'bare node', argv: (sock) => ['-e', BARE, sock] },
  { label: `berthd ${BEFORE}`, argv: () => [join(old, 'daemon/bin/berthd.js'), '--log-level', 'warn'], cli: join(old, 'client-sdk/bin/berth.js') },
  { label: 'berthd now', argv: () => [join(root, 'daemon/bin/berthd.js'), '--log-level', 'warn'], cli: join(root, 'client-sdk/bin/berth.js') },
].map((s) => {
  const home = mkdtempSync(join(tmpdir(), 'bench-startup-'));
  mkdirSync(join(home, 'projects'));
  return { ...s, home, sock: join(home, 'berth.sock'), runs: { idle: [], busy: [] } };
});

const since = (t) => Number(process.hrtime.bigint() - t) / 1e6;
const tryConnect = (sock) => new Promise((resolve) => {
  const c = connect(sock);
  c.once('connect', () => (c.destroy(), resolve(true)));
  c.once('error', () => resolve(false));
});
const tryStatus = (sock) => new Promise((resolve) => {
  const req = request({ socketPath: sock, path: '/rpc', method: 'POST', agent: false, headers: { 'content-type': 'application/json' } }, (res) => {
    let t = '';
    res.on('data', (c) => (t += c));
    res.on('end', () => resolve(res.statusCode === 200 && t.includes('"pid"') ? 'ok' : 'error'));
  });
  req.on('error', () => resolve('unreachable'));
  req.end(JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'daemon.status' }));
});

async function round(s, load) {
  const t = process.hrtime.bigint();
  const proc = spawn(process.execPath, s.argv(s.sock), {
    env: { ...process.env, HOME: s.home, BERTH_HOME: s.home, PROJECTS_ROOT: join(s.home, 'projects') },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const exited = new Promise((r) => proc.once('exit', r));
  // The CLI started at the same moment, as a user would right after a restart: does it get its answer?
  const cli = s.cli
    ? new Promise((resolve) => {
        const p = spawn(process.execPath, [s.cli, 'status', '--json'], { env: { ...process.env, HOME: s.home, BERTH_HOME: s.home }, stdio: 'ignore' });
        p.once('exit', (code) => resolve(code === 0 ? 'ok' : 'failed'));
      })
    : null;
  let bound = null;
  let unreachable = 0;
  const boundWatch = (async () => {
    while (bound === null && since(t) < 60_000) {
      if (await tryConnect(s.sock)) bound = since(t);
      else await new Promise((r) => setTimeout(r, 5));
    }
  })();
  let answered = null;
  while (since(t) < 60_000) {
    const r = await tryStatus(s.sock);
    if (r === 'ok') {
      answered = since(t);
      break;
    }
    if (r === 'unreachable') unreachable++;
    await new Promise((r2) => setTimeout(r2, 5));
  }
  await boundWatch;
  const cliResult = cli ? await cli : null;
  proc.kill('SIGTERM');
  await exited;
  s.runs[load].push({ bound, answered, unreachable, cli: cliResult });
}

function spinners() {
  return cpus().map(() => spawn(process.execPath, ['-e', 'for(;;){}'], { stdio: 'ignore' }));
}

try {
  for (const load of ['idle', 'busy']) {
    const spin = load === 'busy' ? spinners() : [];
    try {
      for (let i = 0; i < N; i++) for (const s of sides) await round(s, load);
    } finally {
      for (const p of spin) p.kill('SIGKILL');
    }
  }
  const floor = (load) => pct(sides[0].runs[load].map((r) => r.answered), 50);
  console.log(`\nbench/startup — ${cpus().length} cores, node ${process.version}, ${N} restarts each, interleaved; "busy" = ${cpus().length} spinning processes (p50 / p90 ms)\n`);
  console.log('| load | process | socket accepts | daemon.status answered | × bare node | polls refused | `berth status` run at spawn |');
  console.log('|---|---|---:|---:|---:|---:|---|');
  for (const load of ['idle', 'busy']) {
    for (const s of sides) {
      const rs = s.runs[load];
      const b = rs.map((r) => r.bound ?? NaN);
      const a = rs.map((r) => r.answered ?? NaN);
      const sdk = s.cli ? `${rs.filter((r) => r.cli === 'ok').length}/${rs.length} ok` : '';
      const refused = rs.reduce((n, r) => n + r.unreachable, 0) / rs.length;
      console.log(`| ${load} | ${s.label} | ${pct(b, 50).toFixed(0)} / ${pct(b, 90).toFixed(0)} | ${pct(a, 50).toFixed(0)} / ${pct(a, 90).toFixed(0)} | ${(pct(a, 50) / floor(load)).toFixed(1)} | ${refused.toFixed(1)} | ${sdk} |`);
    }
  }
} finally {
  for (const s of sides) rmSync(s.home, { recursive: true, force: true });
  rmSync(old, { recursive: true, force: true });
}
