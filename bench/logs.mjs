// bench/logs: what storing a flooding agent's output costs, and how fast it reads back. One session
// prints --lines lines as fast as it can (`seq`); measured:
//   1. ingest: the time until the last line is in $BERTH_HOME/logs (lines/s), berthd's CPU and peak
//      RSS meanwhile, and the latency of `daemon.status` and `projects.list` sampled every 20 ms
//      during the flood against the same calls with no session;
//   2. read back: `berth logs ID` (berth's store, streamed through berthd, printed by the CLI) next
//      to `docker logs` of the same container, --runs times each, interleaved, into /dev/null; the
//      line counts of both; berthd's RSS after --reads more full reads (a read must not keep memory).
// Usage: npm run bench:logs [-- --lines 1000000 --runs 3 --reads 4]
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { addProject, arg, finish, ms, pct, prepareEngine, root, startBerthd } from './lib.mjs';

const LINES = arg('lines', 1_000_000);
const RUNS = arg('runs', 3);
const READS = arg('reads', 4);

prepareEngine();
const HZ = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
const cpuTicks = (pid) => {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return Number(f[11]) + Number(f[12]);
};

/** Whether the newest two segments hold the line `last`. */
function stored(dir, last) {
  let names;
  try {
    names = readdirSync(dir).filter((f) => /^seg-\d+\.jsonl(\.gz)?$/.test(f)).sort();
  } catch {
    return false;
  }
  for (const f of names.slice(-3)) {
    try {
      const buf = readFileSync(join(dir, f));
      const text = f.endsWith('.gz') ? gunzipSync(buf).toString('utf8') : buf.toString('utf8');
      if (text.includes(`"line":"${last}"}`)) return true;
    } catch {
      // compressed meanwhile
    }
  }
  return false;
}

/** daemon.status (which may wait on an engine check) and projects.list (the store only), every 20 ms. */
async function statusLatencies(client, untilFn, maxMs) {
  const lat = [];
  const store = [];
  const end = Date.now() + maxMs;
  while (!(await untilFn()) && Date.now() < end) {
    let t = process.hrtime.bigint();
    await client.daemon.status();
    lat.push(ms(t));
    t = process.hrtime.bigint();
    await client.projects.list();
    store.push(ms(t));
    await new Promise((r) => setTimeout(r, 20));
  }
  return { lat, store };
}

const b = await startBerthd('bench-logs-');
try {
  await addProject(b.client, b.home);
  const idle = [];
  const idleStore = [];
  for (let i = 0; i < 200; i++) {
    let t = process.hrtime.bigint();
    await b.client.daemon.status();
    idle.push(ms(t));
    t = process.hrtime.bigint();
    await b.client.projects.list();
    idleStore.push(ms(t));
  }
  await b.client.agents.define({ name: 'flood', command: ['sh', '-c', `seq 1 ${LINES}`] });
  const c0 = cpuTicks(b.daemon.pid);
  const t0 = Date.now();
  let peak = b.rssMiB();
  const s = await b.client.sessions.start({ project: 'web', agent: 'flood', name: 'flood' });
  const dir = join(b.home, 'logs', s.id);
  let lastCheck = 0;
  const done = async () => {
    peak = Math.max(peak, b.rssMiB());
    if (Date.now() - lastCheck < 500) return false;
    lastCheck = Date.now();
    return stored(dir, String(LINES));
  };
  const { lat: busy, store: busyStore } = await statusLatencies(b.client, done, 600_000);
  const seconds = (Date.now() - t0) / 1000;
  const cpu = (cpuTicks(b.daemon.pid) - c0) / HZ;
  const session = await b.client.sessions.get({ id: s.id });
  const bytes = readdirSync(dir).reduce((n, f) => n + readFileSync(join(dir, f)).length, 0);

  // Read back: the same container's whole log through berth and through the engine.
  const wall = (cmd) => {
    const t = process.hrtime.bigint();
    execFileSync('sh', ['-c', cmd], { stdio: ['ignore', 'ignore', 'inherit'] });
    return ms(t);
  };
  const count = (cmd) => Number(execFileSync('sh', ['-c', `${cmd} | wc -l`], { encoding: 'utf8' }).trim());
  const berthCmd = `"${process.execPath}" "${join(root, 'client-sdk/bin/berth.js')}" --socket "${join(b.home, 'berth.sock')}" logs ${s.id}`;
  const dockerCmd = `docker logs ${session.containerId}`;
  const lines = { berth: count(`${berthCmd} 2>&1`), docker: count(`${dockerCmd} 2>&1`) };
  const rss0 = b.rssMiB();
  const times = { berth: [], docker: [] };
  for (let i = 0; i < RUNS; i++) {
    times.docker.push(wall(`${dockerCmd} >/dev/null 2>&1`));
    times.berth.push(wall(`${berthCmd} >/dev/null 2>&1`));
  }
  for (let i = 0; i < READS; i++) wall(`${berthCmd} >/dev/null 2>&1`);
  await new Promise((r) => setTimeout(r, 2000));
  const rssAfter = b.rssMiB();
  const med = (xs) => pct(xs, 50);

  console.log(`bench/logs: ${LINES} lines (seq) from one session`);
  console.log(`  stored in ${seconds.toFixed(1)} s from start: ${Math.round(LINES / seconds)} lines/s; ${(bytes / 1024 / 1024).toFixed(1)} MiB on disk`);
  console.log(`  berthd CPU ${cpu.toFixed(1)} s (${((cpu / seconds) * 100).toFixed(0)}% of one core), peak RSS ${peak.toFixed(0)} MiB`);
  console.log(`  daemon.status: idle p50 ${pct(idle, 50).toFixed(1)} ms p99 ${pct(idle, 99).toFixed(1)} ms; during the flood p50 ${pct(busy, 50).toFixed(1)} ms p99 ${pct(busy, 99).toFixed(1)} ms (${busy.length} calls)`);
  console.log(`  projects.list (store only): idle p50 ${pct(idleStore, 50).toFixed(1)} ms p99 ${pct(idleStore, 99).toFixed(1)} ms; during the flood p50 ${pct(busyStore, 50).toFixed(1)} ms p99 ${pct(busyStore, 99).toFixed(1)} ms`);
  console.log(`  lines read: berth logs ${lines.berth}, docker logs ${lines.docker} (the engine keeps what its json-file rotation left)`);
  console.log(`  read all, median of ${RUNS}: berth logs ${(med(times.berth) / 1000).toFixed(2)} s, docker logs ${(med(times.docker) / 1000).toFixed(2)} s = ${(med(times.berth) / med(times.docker)).toFixed(2)}x (goal <= 1x)`);
  console.log(`  berthd RSS ${rss0.toFixed(0)} MiB before the reads, ${rssAfter.toFixed(0)} MiB after ${RUNS + READS + 1} full reads`);
} finally {
  await finish(b);
}
