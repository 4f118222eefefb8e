// bench/scale: berthd with months of history. One home with --live sessions running (busybox
// `sleep`, read-only), measured twice: with no history, then after --history settled rows were
// written into its database (berthd stopped in between; the live containers keep running and are
// adopted). For each: spawn-to-answer of daemon.status and until every live session is listed
// running again; RSS; berthd's CPU while idle for --idle seconds with a resync every --resync
// seconds, and every engine API call it made (counted by a pass-through in front of the real
// engine); wall time of `berth ps`; p50 of sessions.list {limit: 100} against a floor server that
// answers the same bytes on a Unix socket (bare node http).
// Usage: npm run bench:scale [-- --history 100000 --live 100 --idle 30 --resync 5]
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { Agent, createServer, request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { BerthClient } from '../client-sdk/dist/index.js';
import { startEngineProxy } from './engine-proxy.mjs';
import { addHistory } from './history.mjs';
import { IMAGE, arg, pct, prepareEngine, root } from './lib.mjs';

const HISTORY = arg('history', 100_000);
const LIVE = arg('live', 100);
const IDLE_S = arg('idle', 30);
const RESYNC_S = arg('resync', 5);
const LISTS = arg('lists', 300);

prepareEngine();
const home = mkdtempSync(join(tmpdir(), 'bench-scale-'));
mkdirSync(join(home, 'projects'));
const proxy = await startEngineProxy(join(home, 'engine.sock'));
const sock = join(home, 'berth.sock');
const env = {
  ...process.env,
  BERTH_HOME: home,
  PROJECTS_ROOT: join(home, 'projects'),
  DOCKER_HOST: `unix://${join(home, 'engine.sock')}`,
  AGENT_DEFAULT_IMAGE: IMAGE,
  AGENT_MEMORY_LIMIT: '64m',
  BERTH_RESYNC_SEC: String(RESYNC_S),
  BERTH_MAX_RUNNING: '0',
};
const since = (t) => Number(process.hrtime.bigint() - t) / 1e6;
const cpuTicks = (pid) => {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return Number(f[11]) + Number(f[12]); // utime + stime, in clock ticks
};
const rssMiB = (pid) => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1]) / 1024;
const HZ = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());

async function start() {
  const t = process.hrtime.bigint();
  const daemon = spawn(process.execPath, [join(root, 'daemon/bin/berthd.js'), '--log-level', 'warn'], { env, stdio: ['ignore', 'ignore', 'inherit'] });
  const client = new BerthClient({ socketPath: sock, timeoutMs: 600_000 });
  for (;;) {
    try {
      await client.daemon.status();
      break;
    } catch {
      await new Promise((r) => setTimeout(r, 5));
    }
  }
  const answered = since(t);
  return { daemon, client, answered, t };
}

async function stop(daemon) {
  const exited = new Promise((r) => daemon.once('exit', r));
  daemon.kill('SIGTERM');
  await exited;
}

async function untilLiveRunning(client) {
  for (;;) {
    const items = (await client.sessions.list({ active: true, limit: 1000 })).items;
    if (items.length === LIVE && items.every((s) => s.state === 'running')) return;
    await new Promise((r) => setTimeout(r, 20));
  }
}

function post(agent, body) {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath: sock, path: '/rpc', method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve(Buffer.concat(chunks)));
    });
    req.on('error', reject);
    req.end(body);
  });
}

/**
 * p50 of sessions.list {limit: 100}, each request followed by one to a floor server (bare node
 * http on a Unix socket) answering the same bytes: interleaved, so load from anything else on the
 * machine falls on both alike.
 */
async function listP50(agent) {
  const body = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'sessions.list', params: { limit: 100 } });
  const bytes = await post(agent, body);
  const floor = await floorServer(bytes);
  // Warm up both (JIT, connection) as long as measured.
  for (let i = 0; i < LISTS; i++) {
    await post(agent, body);
    await floor.once();
  }
  const lat = [];
  const floorLat = [];
  for (let i = 0; i < LISTS; i++) {
    let t = process.hrtime.bigint();
    await post(agent, body);
    lat.push(since(t));
    t = process.hrtime.bigint();
    await floor.once();
    floorLat.push(since(t));
  }
  // The same page again is served from what was read while the database did not change; walking
  // the history page by page (cursor) reads every page anew.
  const walk = [];
  let cursor = null;
  for (let i = 0; i < LISTS; i++) {
    const page = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'sessions.list', params: { limit: 100, ...(cursor ? { cursor } : {}) } });
    let t = process.hrtime.bigint();
    const res = await post(agent, page);
    walk.push(since(t));
    t = process.hrtime.bigint();
    await floor.once();
    floorLat.push(since(t));
    cursor = JSON.parse(res).result.nextCursor;
  }
  await floor.close();
  return { p50: pct(lat, 50), walk: pct(walk, 50), floor: pct(floorLat, 50), bytes };
}

async function measure(label) {
  const s = await start();
  await untilLiveRunning(s.client);
  const adopted = since(s.t);
  await new Promise((r) => setTimeout(r, 2000));
  proxy.reset();
  const c0 = cpuTicks(s.daemon.pid);
  const t0 = Date.now();
  await new Promise((r) => setTimeout(r, IDLE_S * 1000));
  const cpu = (cpuTicks(s.daemon.pid) - c0) / HZ / ((Date.now() - t0) / 1000);
  const calls = proxy.snapshot();
  const rss = rssMiB(s.daemon.pid);
  const ps = [];
  for (let i = 0; i < 5; i++) {
    const t = process.hrtime.bigint();
    execFileSync(process.execPath, [join(root, 'client-sdk/bin/berth.js'), '--socket', sock, 'ps'], { encoding: 'utf8' });
    ps.push(since(t));
  }
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  const list = await listP50(agent);
  agent.destroy();
  s.client.close();
  await stop(s.daemon);
  return { label, answered: s.answered, adopted, rss, cpu, calls, ps: pct(ps, 50), list };
}

/** A bare node server on a Unix socket answering every request with `bytes`: the floor for a list. */
async function floorServer(bytes) {
  const floorSock = join(home, 'floor.sock');
  rmSync(floorSock, { force: true });
  const server = createServer((req, res) => {
    req.resume();
    req.on('end', () => res.end(bytes));
  });
  await new Promise((r) => server.listen(floorSock, r));
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  const once = () =>
    new Promise((resolve, reject) => {
      const req = request({ socketPath: floorSock, path: '/rpc', method: 'POST', agent }, (res) => {
        res.resume();
        res.on('end', resolve);
      });
      req.on('error', reject);
      req.end('{}');
    });
  return {
    once,
    close: () => {
      agent.destroy();
      return new Promise((r) => server.close(r));
    },
  };
}

let first;
try {
  // Setup: a project, a read-only agent and LIVE sessions, then berthd stopped (they keep running).
  first = await start();
  const repo = join(home, 'projects', 'web');
  mkdirSync(repo);
  execFileSync('git', ['init', '-q', '-b', 'main', repo]);
  execFileSync('git', ['-C', repo, '-c', 'user.email=b@b', '-c', 'user.name=b', 'commit', '-q', '--allow-empty', '-m', 'init']);
  execFileSync('chown', ['-R', '1000:1000', repo]);
  await first.client.projects.add({ name: 'web', path: repo });
  await first.client.agents.define({ name: 'idle', command: ['sleep', '86400'], readOnly: true });
  let template;
  for (let i = 0; i < LIVE; i += 10) {
    const batch = await Promise.all(Array.from({ length: Math.min(10, LIVE - i) }, (_, k) => first.client.sessions.start({ project: 'web', agent: 'idle', name: `live-${i + k}`, restartPolicy: 'never' })));
    template ??= batch[0].id;
  }
  await untilLiveRunning(first.client);
  first.client.close();
  await stop(first.daemon);

  const empty = await measure('no history');
  addHistory(home, template, HISTORY);
  const full = await measure(`${HISTORY.toLocaleString('en')} rows`);

  const resyncs = (m) => m.calls['GET /containers/json'] ?? 0;
  const other = (m) => Object.entries(m.calls).filter(([k]) => k !== 'GET /containers/json' && k !== 'GET /events').map(([k, v]) => `${k} ${v}`).join(', ') || 'none';
  console.log(`\nbench/scale: ${LIVE} live sessions; idle ${IDLE_S} s at BERTH_RESYNC_SEC=${RESYNC_S}; ${LISTS} lists of 100\n`);
  console.log('| | no history | with history | ratio | goal |');
  console.log('|---|---|---|---|---|');
  const row = (k, a, b, unit, goal, d = 0) => console.log(`| ${k} | ${a.toFixed(d)} ${unit} | ${b.toFixed(d)} ${unit} | ${(b / a).toFixed(2)}× | ${goal} |`);
  row('spawn → daemon.status answered', empty.answered, full.answered, 'ms', '');
  row('spawn → all live sessions listed running', empty.adopted, full.adopted, 'ms', '≤ 1.5×');
  row('RSS after idle', empty.rss, full.rss, 'MiB', '≤ 150 MB', 0);
  console.log(`| berthd CPU while idle | ${(empty.cpu * 100).toFixed(2)} % | ${(full.cpu * 100).toFixed(2)} % | | ≤ 1 % |`);
  console.log(`| container listings while idle | ${resyncs(empty)} | ${resyncs(full)} | | one per resync (${Math.floor(IDLE_S / RESYNC_S)}) |`);
  console.log(`| other engine calls while idle | ${other(empty)} | ${other(full)} | | none but what changed |`);
  row('`berth ps` (CLI process)', empty.ps, full.ps, 'ms', '≤ 1.5×');
  row('sessions.list {limit: 100} p50, same page again', empty.list.p50, full.list.p50, 'ms', '', 2);
  row('sessions.list {limit: 100} p50, walking pages (cursor)', empty.list.walk, full.list.walk, 'ms', '', 2);
  row('floor server, same bytes, interleaved, p50', empty.list.floor, full.list.floor, 'ms', '', 2);
  const vs = (m) => `same page ${(m.list.p50 / m.list.floor).toFixed(2)}×, walking ${(m.list.walk / m.list.floor).toFixed(2)}×`;
  console.log(`| sessions.list vs the floor (${full.list.bytes.length} bytes) | ${vs(empty)} | ${vs(full)} | | ≤ 3× |`);
} finally {
  try {
    // Everything this run's berthd made carries its instance id.
    const db = new Database(join(home, 'berth.db'), { readonly: true });
    const id = db.prepare("SELECT value FROM meta WHERE key = 'instance_id'").get()?.value;
    db.close();
    const f = `label=dev.berth.instance=${id}`;
    const ids = (...a) => execFileSync('docker', a, { encoding: 'utf8' }).split('\n').filter(Boolean);
    if (id) {
      const cs = ids('ps', '-aq', '--filter', f);
      if (cs.length) execFileSync('docker', ['rm', '-f', ...cs], { stdio: 'ignore' });
      const vs = ids('volume', 'ls', '-q', '--filter', f);
      if (vs.length) execFileSync('docker', ['volume', 'rm', '-f', ...vs], { stdio: 'ignore' });
      for (const n of ids('network', 'ls', '-q', '--filter', f)) execFileSync('docker', ['network', 'rm', n], { stdio: 'ignore' });
    }
  } catch (err) {
    console.error(`bench: cleanup: ${err.message}`);
  }
  await proxy.close();
  rmSync(home, { recursive: true, force: true });
}
