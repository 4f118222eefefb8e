// bench/maintenance: what berthd's own upkeep costs the process that serves RPCs.
//   1. backup: a state database of --rows rows (~590 B each) backed up by berthd's Backups (SQLite's
//      online backup API between event-loop turns, the copy's integrity check on a worker thread),
//      against the raw tool: better-sqlite3's db.backup() plus the integrity check in-thread. Reported:
//      wall time, and the longest event-loop stall meanwhile (what an RPC arriving then would wait).
//   2. disk use: $BERTH_HOME with --files log files, walked by DiskUsage, against `du -sb` on the
//      same tree (wall time: du is a process of its own); the longest stall of berthd's loop during its walk.
// Each is run --rounds times, interleaved. Usage: npm run bench:maintenance [-- --rows 100000 --files 50000 --rounds 3]
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import Database from 'better-sqlite3';
import pino from 'pino';
import { Store } from '../daemon/dist/store/index.js';
import { Backups } from '../daemon/dist/maintenance/backup.js';
import { DiskUsage } from '../daemon/dist/maintenance/disk.js';
import { arg, ms } from './lib.mjs';

const ROWS = arg('rows', 100_000);
const FILES = arg('files', 50_000);
const ROUNDS = arg('rounds', 3);
const clock = { now: () => new Date(), sleep: async () => {} };

/** Runs fn, returning its wall time and the longest event-loop stall meanwhile (ms). */
async function stalls(fn) {
  const h = monitorEventLoopDelay({ resolution: 2 });
  h.enable();
  const t = process.hrtime.bigint();
  await fn();
  const wall = ms(t);
  // The histogram records a stall when its timer fires late: let it fire once after a synchronous block.
  await new Promise((r) => setTimeout(r, 10));
  h.disable();
  return { wall, stall: h.max / 1e6 };
}

const home = mkdtempSync(join(tmpdir(), 'bt-bench-maint-'));
try {
  const store = Store.open(join(home, 'berth.db'));
  store.db.exec('CREATE TABLE filler (id INTEGER PRIMARY KEY, blob TEXT)');
  const ins = store.db.prepare('INSERT INTO filler (blob) VALUES (?)');
  store.db.transaction(() => {
    for (let i = 0; i < ROWS; i++) ins.run('x'.repeat(580) + i);
  })();
  const backups = new Backups(store.db, { home, keep: 2, clock, log: pino({ level: 'silent' }) });
  for (let i = 0; i < FILES / 100; i++) {
    const dir = join(home, 'logs', `s${i}`);
    mkdirSync(dir, { recursive: true });
    for (let f = 0; f < 100; f++) writeFileSync(join(dir, `${f}.log`), 'line\n'.repeat(20));
  }
  const rows = { berth: [], raw: [], walk: [], du: [] };
  for (let r = 0; r < ROUNDS; r++) {
    rows.berth.push(await stalls(() => backups.backup()));
    const rawFile = join(home, `raw-${r}.db`);
    rows.raw.push(
      await stalls(async () => {
        await store.db.backup(rawFile);
        const c = new Database(rawFile);
        c.pragma('integrity_check', { simple: true });
        c.close();
      }),
    );
    rmSync(rawFile, { force: true });
    rows.walk.push(await stalls(() => new DiskUsage(home, clock).refresh()));
    rows.du.push(await stalls(async () => execFileSync('du', ['-sb', home])));
  }
  store.close();
  const med = (xs, k) => [...xs.map((x) => x[k])].sort((a, b) => a - b)[Math.floor(xs.length / 2)].toFixed(0);
  console.log(`maintenance bench: ${ROWS} rows (${(Number(execFileSync('stat', ['-c', '%s', join(home, 'berth.db')], { encoding: 'utf8' })) / 1e6).toFixed(0)} MB), ${FILES} files, ${ROUNDS} rounds, load ${loadavg()[0].toFixed(1)}; medians`);
  console.log('| what | wall ms | longest loop stall ms |');
  console.log('|---|---|---|');
  console.log(`| berth backup (verify on a worker) | ${med(rows.berth, 'wall')} | ${med(rows.berth, 'stall')} |`);
  console.log(`| raw: db.backup + integrity_check in-thread | ${med(rows.raw, 'wall')} | ${med(rows.raw, 'stall')} |`);
  console.log(`| berth disk walk (DiskUsage) | ${med(rows.walk, 'wall')} | ${med(rows.walk, 'stall')} |`);
  console.log(`| raw: du -sb (a process of its own: wall time only) | ${med(rows.du, 'wall')} | - |`);
} finally {
  rmSync(home, { recursive: true, force: true });
}
