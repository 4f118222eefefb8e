// bench/tasks: agents working through a big backlog. A project with --tasks tasks (40% done as
// history, priorities 0-9, one in ten depending on one or two tasks shortly before it), written
// straight into a stopped berthd's database: the import path (tasks.import, at most 10,000 entries
// a call, each entry looked up by key and announced as an event) is not what is measured, and rows
// in one transaction take a second. Then --claimers sessions (busybox `sleep`, read-only), and the
// bench itself is their agents: each claimer holds a keep-alive connection to its session's bridge
// socket on the host and loops tasks.claim -> tasks.complete.
//   1. saturation: every claimer back to back (--rounds rounds of --per claims each);
//   2. paced: each of --rates claims/s offered, spread evenly over the claimers, for --paced seconds;
//   3. tasks.list {limit: 100}, the first page, one request at a time.
// Each is interleaved round for round with a floor: a bare node http server on a Unix socket in a
// process of its own (bench/floor-server.mjs), answering the same bytes berthd answered, driven by
// the same client code. Afterwards: no task was claimed by two sessions, by what the claimers were
// told and by what the database says. --cpu-prof writes a CPU profile of berthd to ./bench-prof/;
// --rev REV runs the berthd of an earlier commit instead (built beside this tree), for a before/after.
// Usage: npm run bench:tasks [-- --tasks 100000 --claimers 100 --per 40 --rounds 3 --rates 2000,500 --paced 3 --lists 300 --cpu-prof --rev REV]
import { execFileSync, fork, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { BerthClient } from '../client-sdk/dist/index.js';
import { IMAGE, addProject, arg, buildRevision, finish, ms, pct, prepareEngine, root } from './lib.mjs';

const TASKS = arg('tasks', 100_000);
const CLAIMERS = arg('claimers', 100);
const PER = arg('per', 40);
const ROUNDS = arg('rounds', 3);
// Offered rates for the paced phase: the goal's, and one berthd should sustain on a small machine.
const RATES = (process.argv.includes('--rates') ? process.argv[process.argv.indexOf('--rates') + 1] : '2000,500').split(',').map(Number);
const PACED_S = arg('paced', 3);
const LISTS = arg('lists', 300);
const PROFILE = process.argv.includes('--cpu-prof');
const DONE = Math.floor(TASKS * 0.4);
const REV = process.argv.includes('--rev') ? process.argv[process.argv.indexOf('--rev') + 1] : null;

const HZ = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
const cpuTicks = (pid) => {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return Number(f[11]) + Number(f[12]);
};
const sleep = (m) => new Promise((r) => setTimeout(r, m));

prepareEngine();
const daemonRoot = REV ? buildRevision(REV) : root;
const home = mkdtempSync(join(tmpdir(), 'bench-tasks-'));
mkdirSync(join(home, 'projects'));
const sock = join(home, 'berth.sock');

async function startBerthd() {
  const prof = PROFILE ? ['--cpu-prof', `--cpu-prof-dir=${join(root, 'bench-prof')}`] : [];
  const daemon = spawn(process.execPath, [...prof, join(daemonRoot, 'daemon/bin/berthd.js'), '--log-level', 'warn'], {
    env: { ...process.env, BERTH_HOME: home, PROJECTS_ROOT: join(home, 'projects'), AGENT_DEFAULT_IMAGE: IMAGE, AGENT_MEMORY_LIMIT: '64m', BERTH_MAX_RUNNING: '0' },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const client = new BerthClient({ socketPath: sock, timeoutMs: 600_000 });
  for (let i = 0; ; i++) {
    try {
      await client.daemon.status();
      return { home, daemon, client };
    } catch (err) {
      if (i > 300) throw err;
      await sleep(100);
    }
  }
}

async function stopBerthd(b) {
  b.client.close();
  const exited = new Promise((r) => b.daemon.once('exit', r));
  b.daemon.kill('SIGTERM');
  await exited;
}

/** The backlog, in one transaction on the stopped berthd's database (deterministic: same every run). */
function seedTasks() {
  const db = new Database(join(home, 'berth.db'));
  let seed = 15;
  const rnd = () => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed / 2 ** 31;
  };
  const body = 'Make the change this title names, with tests next to the code it touches; keep the public API as it is and say in the summary what was left out. '.repeat(2);
  const task = db.prepare(
    `INSERT INTO tasks (id, project, title, body, priority, labels, state, attempts, result, created_at, updated_at)
     VALUES (@id, 'web', @title, @body, @priority, '["backlog"]', @state, @attempts, @result, @at, @at)`,
  );
  const dep = db.prepare('INSERT OR IGNORE INTO task_deps (task_id, depends_on) VALUES (?, ?)');
  const t0 = Date.parse('2026-01-01T00:00:00Z');
  let deps = 0;
  db.transaction(() => {
    for (let id = 1; id <= TASKS; id++) {
      const done = id <= DONE;
      const at = new Date(t0 + id * 1000).toISOString();
      task.run({
        id,
        title: `Task ${id}: tidy module ${id % 997}`,
        body,
        priority: Math.floor(rnd() * 10),
        state: done ? 'done' : 'open',
        attempts: done ? 1 : 0,
        result: done ? JSON.stringify({ branch: null, commit: null, summary: 'done long ago', merged: null }) : null,
        at,
      });
      if (id > 1 && rnd() < 0.1) {
        for (let k = rnd() < 0.5 ? 1 : 2; k > 0; k--) {
          deps += dep.run(id, Math.max(1, id - 1 - Math.floor(rnd() * 500))).changes;
        }
      }
    }
  })();
  const blocked = db
    .prepare(`SELECT count(*) FROM tasks t WHERE state = 'open' AND EXISTS (SELECT 1 FROM task_deps d JOIN tasks u ON u.id = d.depends_on WHERE d.task_id = t.id AND u.state != 'done')`)
    .pluck()
    .get();
  db.close();
  return { deps, blocked };
}

/** One POST on a keep-alive connection; resolves with the parsed answer. */
function post(target, body) {
  return new Promise((resolve, reject) => {
    const req = request(
      { socketPath: target.socketPath, path: target.path, method: 'POST', agent: target.agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } },
      (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          res.statusCode === 200 ? resolve({ text, json: JSON.parse(text) }) : reject(new Error(`HTTP ${res.statusCode}: ${text.slice(0, 200)}`));
        });
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

const rpc = (method, params) => JSON.stringify({ jsonrpc: '2.0', id: 1, method, params });
const CLAIM = rpc('tasks.claim', {});

/** What the claimers saw: latencies, and who was given which task. */
const claimedBy = new Map();
let doubles = 0;

function answer(r, what) {
  if (r.json.error) throw new Error(`${what}: ${r.json.error.data?.code ?? r.json.error.code} ${r.json.error.message}`);
  return r.json.result;
}

/** One claim and its completion; returns false when nothing was left to claim. */
async function cycle(c, lat) {
  let t = process.hrtime.bigint();
  const claimed = answer(await post(c.target('tasks.claim'), CLAIM), 'tasks.claim');
  lat.claim.push(ms(t));
  if (!claimed.task) return false;
  if (c.session) {
    const id = claimed.task.id;
    if (claimedBy.has(id)) doubles++;
    claimedBy.set(id, [...(claimedBy.get(id) ?? []), c.session]);
  }
  t = process.hrtime.bigint();
  answer(await post(c.target('tasks.complete'), c.complete), 'tasks.complete');
  lat.complete.push(ms(t));
  return true;
}

/** Every claimer back to back, `per` cycles each. */
async function saturate(claimers, per) {
  const lat = { claim: [], complete: [] };
  const t = process.hrtime.bigint();
  await Promise.all(claimers.map(async (c) => {
    for (let i = 0; i < per; i++) if (!(await cycle(c, lat))) throw new Error('the backlog ran out; use more --tasks or fewer --per');
  }));
  return { lat, sec: ms(t) / 1000 };
}

/** `rate` cycles a second offered for `sec` seconds, each claimer on its own evenly spaced schedule. */
async function paced(claimers, rate, sec) {
  const lat = { claim: [], complete: [] };
  const period = (1000 * claimers.length) / rate;
  const n = Math.max(1, Math.round((rate * sec) / claimers.length));
  const t0 = performance.now() + 20;
  let late = 0;
  const t = process.hrtime.bigint();
  await Promise.all(claimers.map(async (c, k) => {
    for (let i = 0; i < n; i++) {
      const wait = t0 + ((k + i * claimers.length) * period) / claimers.length - performance.now();
      if (wait > 0) await sleep(wait);
      else if (wait < -period) late++;
      if (!(await cycle(c, lat))) throw new Error('the backlog ran out');
    }
  }));
  return { lat, sec: ms(t) / 1000, late };
}

/** p50 of one request at a time, berthd and the floor alternately, after as many to warm up. */
async function oneByOne(berthd, floor, body) {
  const a = [];
  const f = [];
  for (let i = 0; i < 2 * LISTS; i++) {
    let t = process.hrtime.bigint();
    answer(await post(berthd, body), 'tasks.list');
    if (i >= LISTS) a.push(ms(t));
    t = process.hrtime.bigint();
    await post(floor, body);
    if (i >= LISTS) f.push(ms(t));
  }
  return { berthd: pct(a, 50), floor: pct(f, 50) };
}

let b;
let floorProc;
const agents = [];
const keepAlive = () => {
  const a = new Agent({ keepAlive: true, maxSockets: 1 });
  agents.push(a);
  return a;
};
try {
  const load = () => loadavg().map((l) => l.toFixed(2)).join(' ');

  // Setup: the project, berthd stopped, the backlog written, berthd again, the sessions.
  b = await startBerthd();
  await addProject(b.client, home);
  await stopBerthd(b);
  let t = process.hrtime.bigint();
  const seeded = seedTasks();
  const seedMs = ms(t);
  b = await startBerthd();
  await b.client.agents.define({ name: 'idle', command: ['sleep', '86400'], readOnly: true, network: 'none' });
  const sessions = [];
  for (let i = 0; i < CLAIMERS; i += 10) {
    sessions.push(...(await Promise.all(Array.from({ length: Math.min(10, CLAIMERS - i) }, (_, k) => b.client.sessions.start({ project: 'web', agent: 'idle', name: `claimer-${i + k}` })))));
  }
  for (;;) {
    const items = (await b.client.sessions.list({ active: true, limit: 1000 })).items;
    if (items.filter((s) => s.state === 'running').length === CLAIMERS) break;
    await sleep(200);
  }

  // The floor answers what berthd answered: a claim, a completion, a list page.
  const floorDir = join(home, 'floor');
  mkdirSync(floorDir);
  const floorSock = join(home, 'floor.sock');
  const claimers = sessions.map((s) => {
    const bridge = { socketPath: join(home, 'bridge', 'sessions', s.id, 'claude-bridge.sock'), path: '/rpc', agent: keepAlive() };
    return { session: s.id, target: () => bridge, complete: rpc('tasks.complete', { summary: `by ${s.id}` }) };
  });
  const sample = claimers[0];
  const claimText = (await post(sample.target(), CLAIM)).text;
  const completeText = (await post(sample.target(), sample.complete)).text;
  claimedBy.set(JSON.parse(claimText).result.task.id, [sample.session]);
  const LIST = rpc('tasks.list', { project: 'web', limit: 100 });
  const LIST_OPEN = rpc('tasks.list', { project: 'web', state: 'open', limit: 100 });
  const main = { socketPath: sock, path: '/rpc', agent: keepAlive() };
  writeFileSync(join(floorDir, 'tasks.claim.json'), claimText);
  writeFileSync(join(floorDir, 'tasks.complete.json'), completeText);
  writeFileSync(join(floorDir, 'list.json'), (await post(main, LIST)).text);
  writeFileSync(join(floorDir, 'list-open.json'), (await post(main, LIST_OPEN)).text);
  floorProc = fork(join(root, 'bench/floor-server.mjs'), [floorSock, floorDir], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
  await new Promise((r) => floorProc.once('message', r));
  const floors = claimers.map(() => {
    const agent = keepAlive();
    return { session: null, target: (m) => ({ socketPath: floorSock, path: `/${m}`, agent }), complete: sample.complete };
  });

  // 1. Saturation, after the sessions' start has settled and a warm-up of each side.
  await sleep(10_000);
  const machine = `${cpus().length} cores (${cpus()[0]?.model ?? 'cpu'}), Node ${process.version}; load average ${load()} when measuring began`;
  await saturate(claimers, 5);
  await saturate(floors, 5);
  const sat = { berthd: { claim: [], complete: [], sec: 0, n: 0, cpu: 0 }, floor: { claim: [], complete: [], sec: 0, n: 0 } };
  for (let r = 0; r < ROUNDS; r++) {
    const c0 = cpuTicks(b.daemon.pid);
    const x = await saturate(claimers, PER);
    sat.berthd.cpu += (cpuTicks(b.daemon.pid) - c0) / HZ;
    const y = await saturate(floors, PER);
    for (const [side, m] of [['berthd', x], ['floor', y]]) {
      sat[side].claim.push(...m.lat.claim);
      sat[side].complete.push(...m.lat.complete);
      sat[side].sec += m.sec;
      sat[side].n += m.lat.claim.length;
    }
  }

  // 2. Paced at the goal's rate.
  const paces = [];
  for (const rate of RATES) {
    const pace = { rate, berthd: { claim: [], complete: [], sec: 0, n: 0, late: 0 }, floor: { claim: [], complete: [], sec: 0, n: 0, late: 0 } };
    for (let r = 0; r < 2; r++) {
      for (const [side, cs] of [['berthd', claimers], ['floor', floors]]) {
        const m = await paced(cs, rate, PACED_S / 2);
        pace[side].claim.push(...m.lat.claim);
        pace[side].complete.push(...m.lat.complete);
        pace[side].sec += m.sec;
        pace[side].n += m.lat.claim.length;
        pace[side].late += m.late;
      }
    }
    paces.push(pace);
  }

  // 3. The first page of the list.
  const list = await oneByOne(main, { socketPath: floorSock, path: '/list', agent: keepAlive() }, LIST);
  const listOpen = await oneByOne(main, { socketPath: floorSock, path: '/list-open', agent: keepAlive() }, LIST_OPEN);

  // No double claims: by what the claimers were told, and by the database.
  const db = new Database(join(home, 'berth.db'), { readonly: true });
  const rows = db.prepare('SELECT id, state, attempts, result FROM tasks WHERE id > ? AND attempts > 0').all(DONE);
  const stillClaimed = db.prepare("SELECT count(*) FROM tasks WHERE state = 'claimed'").pluck().get();
  db.close();
  const dbProblems = [];
  for (const r of rows) {
    const by = claimedBy.get(r.id);
    const summary = r.result ? JSON.parse(r.result).summary : null;
    if (!by) dbProblems.push(`task ${r.id} has ${r.attempts} attempts but no claimer was given it`);
    else if (r.state !== 'done' || r.attempts !== 1 || summary !== `by ${by[0]}`) dbProblems.push(`task ${r.id}: ${r.state}, ${r.attempts} attempts, ${summary}`);
  }
  for (const id of claimedBy.keys()) if (!rows.some((r) => r.id === id)) dbProblems.push(`task ${id} was given to a claimer but the database has no attempt`);
  const claims = claimedBy.size + doubles;
  const loadAfter = load();

  const f = (x, d = 2) => x.toFixed(d);
  const n0 = (x) => Math.round(x).toLocaleString('en');
  console.log(`\nbench/tasks${REV ? ` (berthd at ${REV})` : ''}: ${TASKS.toLocaleString('en')} tasks (${DONE.toLocaleString('en')} done, ${seeded.deps.toLocaleString('en')} dependencies, ${seeded.blocked.toLocaleString('en')} open tasks waiting on one), written in ${n0(seedMs)} ms; ${CLAIMERS} claimers on their own bridge sockets; ${machine}\n`);
  console.log('| | berthd | floor (same bytes) | berthd ÷ floor | goal |');
  console.log('|---|---|---|---|---|');
  const rate = (s) => s.n / s.sec;
  console.log(`| claims/s, ${CLAIMERS} claimers back to back (claim + complete), ${ROUNDS} × ${CLAIMERS * PER} | ${n0(rate(sat.berthd))} | ${n0(rate(sat.floor))} | ${f(rate(sat.floor) / rate(sat.berthd))}× slower | ≥ 2,000 |`);
  const pp = (xs) => `${f(pct(xs, 50))} / ${f(pct(xs, 99))} ms`;
  const rt = (a, b) => `${f(pct(a, 50) / pct(b, 50))}× / ${f(pct(a, 99) / pct(b, 99))}×`;
  console.log(`| tasks.claim p50 / p99, back to back | ${pp(sat.berthd.claim)} | ${pp(sat.floor.claim)} | ${rt(sat.berthd.claim, sat.floor.claim)} | |`);
  console.log(`| tasks.complete p50 / p99, back to back | ${pp(sat.berthd.complete)} | ${pp(sat.floor.complete)} | ${rt(sat.berthd.complete, sat.floor.complete)} | |`);
  console.log(`| berthd CPU per claim + complete, back to back | ${f((sat.berthd.cpu / sat.berthd.n) * 1e6, 0)} µs | | | |`);
  for (const pace of paces) {
    const r = n0(pace.rate);
    console.log(`| claims/s achieved, ${r}/s offered for ${PACED_S} s | ${n0(rate(pace.berthd))} | ${n0(rate(pace.floor))} | | ${r} |`);
    console.log(`| tasks.claim p50 / p99 at ${r}/s offered | ${pp(pace.berthd.claim)} | ${pp(pace.floor.claim)} | ${rt(pace.berthd.claim, pace.floor.claim)} | p99 ≤ 10 ms |`);
    console.log(`| tasks.complete p50 / p99 at ${r}/s offered | ${pp(pace.berthd.complete)} | ${pp(pace.floor.complete)} | ${rt(pace.berthd.complete, pace.floor.complete)} | |`);
  }
  console.log(`| tasks.list {project, limit: 100} first page p50 | ${f(list.berthd)} ms | ${f(list.floor)} ms | ${f(list.berthd / list.floor)}× | |`);
  console.log(`| tasks.list {project, state: open, limit: 100} first page p50 | ${f(listOpen.berthd)} ms | ${f(listOpen.floor)} ms | ${f(listOpen.berthd / listOpen.floor)}× | |`);
  console.log(`| double claims | ${doubles} of ${n0(claims)} claims; database: ${dbProblems.length ? dbProblems.length + ' problems' : `${n0(rows.length)} tasks done once each, by the session told it had it; ${stillClaimed} still claimed`} | | | 0 |`);
  console.log(`\n(load average ${loadAfter} when measuring ended)`);
  for (const pace of paces) if (pace.berthd.late) console.log(`\n(at ${n0(pace.rate)}/s berthd fell behind the schedule by more than a period ${pace.berthd.late} times)`);
  for (const p of dbProblems.slice(0, 10)) console.log(`  ${p}`);
  if (doubles || dbProblems.length) process.exitCode = 1;
} finally {
  for (const a of agents) a.destroy();
  floorProc?.kill('SIGTERM');
  if (b) await finish(b).catch((e) => console.error(`bench: cleanup: ${e.message}`));
  else rmSync(home, { recursive: true, force: true });
  if (REV) rmSync(daemonRoot, { recursive: true, force: true });
  if (PROFILE) console.log(`berthd CPU profile(s) in ${join(root, 'bench-prof')}`);
}
