// bench/rpc: round trip of `daemon.status` over berthd's Unix socket (HTTP keep-alive, JSON-RPC),
// next to a bare Node `net` echo server on a Unix socket, same machine, same run.
// Usage: npm run bench:rpc [-- --seconds 3]
import { fork, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, mkdirSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { connect } from 'node:net';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const seconds = Number(process.argv[process.argv.indexOf('--seconds') + 1]) || 3;
const CONCURRENCY = [1, 32];

function pct(sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

async function drive(concurrency, once) {
  // Warm-up, then measure for `seconds`.
  const warmEnd = Date.now() + 500;
  await Promise.all(Array.from({ length: concurrency }, async (_, w) => { while (Date.now() < warmEnd) await once(w); }));
  const lat = [];
  const end = Date.now() + seconds * 1000;
  const t0 = process.hrtime.bigint();
  await Promise.all(
    Array.from({ length: concurrency }, async (_, w) => {
      while (Date.now() < end) {
        const s = process.hrtime.bigint();
        await once(w);
        lat.push(Number(process.hrtime.bigint() - s) / 1e6);
      }
    }),
  );
  const elapsed = Number(process.hrtime.bigint() - t0) / 1e9;
  lat.sort((a, b) => a - b);
  return { n: lat.length, p50: pct(lat, 50), p99: pct(lat, 99), rps: lat.length / elapsed };
}

async function benchBerthd(socket, concurrency) {
  const agent = new Agent({ keepAlive: true, maxSockets: concurrency });
  const body = JSON.stringify({ jsonrpc: '2.0', method: 'daemon.status', id: 1 });
  const once = () =>
    new Promise((resolve, reject) => {
      const req = request(
        { socketPath: socket, path: '/rpc', method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } },
        (res) => {
          let n = 0;
          res.on('data', (c) => (n += c.length));
          res.on('end', () => (res.statusCode === 200 && n > 0 ? resolve() : reject(new Error(`HTTP ${res.statusCode}`))));
        },
      );
      req.on('error', reject);
      req.end(body);
    });
  try {
    return await drive(concurrency, once);
  } finally {
    agent.destroy();
  }
}

async function benchEcho(socket, concurrency) {
  const conns = await Promise.all(
    Array.from({ length: concurrency }, () => new Promise((resolve, reject) => {
      const s = connect(socket, () => resolve(s));
      s.on('error', reject);
    })),
  );
  const payload = Buffer.from(`${JSON.stringify({ jsonrpc: '2.0', method: 'daemon.status', id: 1 })}\n`);
  const once = (w) =>
    new Promise((resolve) => {
      const s = conns[w];
      let got = 0;
      const onData = (c) => {
        got += c.length;
        if (got >= payload.length) {
          s.off('data', onData);
          resolve();
        }
      };
      s.on('data', onData);
      s.write(payload);
    });
  try {
    return await drive(concurrency, once);
  } finally {
    for (const s of conns) s.destroy();
  }
}

async function waitFor(fn, what) {
  const end = Date.now() + 20_000;
  while (Date.now() < end) {
    if (await fn()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out: ${what}`);
}

const probe = (socket) =>
  new Promise((resolve) => {
    const s = connect(socket, () => { s.destroy(); resolve(true); });
    s.on('error', () => resolve(false));
  });

const home = mkdtempSync(join(tmpdir(), 'bench-rpc-'));
mkdirSync(join(home, 'projects'));
const berthSock = join(home, 'berth.sock');
const echoSock = join(home, 'echo.sock');
const daemon = spawn(process.execPath, [join(root, 'daemon/bin/berthd.js'), '--log-level', 'warn'], {
  env: { ...process.env, BERTH_HOME: home, PROJECTS_ROOT: join(home, 'projects'), BERTH_MAX_RUNNING: '0' },
  stdio: ['ignore', 'ignore', 'inherit'],
});
const echo = fork(join(root, 'bench/echo-server.mjs'), [echoSock], { stdio: 'inherit' });

try {
  await waitFor(() => probe(berthSock), 'berthd socket');
  await waitFor(() => probe(echoSock), 'echo socket');
  const rows = [];
  for (const c of CONCURRENCY) {
    const b = await benchBerthd(berthSock, c);
    const e = await benchEcho(echoSock, c);
    rows.push({ c, b, e });
  }
  const f = (x) => x.toFixed(3);
  console.log(`\nbench/rpc — ${cpus().length} cores, ${cpus()[0]?.model ?? 'cpu'}, Node ${process.version}, ${seconds}s per case\n`);
  console.log('| clients | berthd p50 ms | berthd p99 ms | berthd req/s | net echo p50 ms | net echo p99 ms | net echo req/s | req/s ratio (echo/berthd) |');
  console.log('|---|---|---|---|---|---|---|---|');
  for (const { c, b, e } of rows) {
    console.log(`| ${c} | ${f(b.p50)} | ${f(b.p99)} | ${Math.round(b.rps)} | ${f(e.p50)} | ${f(e.p99)} | ${Math.round(e.rps)} | ${(e.rps / b.rps).toFixed(2)}× |`);
  }
} finally {
  daemon.kill('SIGTERM');
  echo.kill('SIGTERM');
  await new Promise((r) => setTimeout(r, 300));
  rmSync(home, { recursive: true, force: true });
}
