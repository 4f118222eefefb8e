// bench/logs-read: reading a session's whole log back, `berth logs ID` (berth's log store, streamed
// through berthd) next to `docker logs` of the same container, in the same run, into the same sink;
// and berthd's RSS before and after --reads full reads (a full read must not keep memory).
// The session prints --lines lines (seq) and exits. When the store has nothing of it (the ingest
// is not in this build), the bench writes the store from the engine's log in the store's format
// (segments of --segment MiB, closed ones gzipped), so the read side is measured alone.
// Usage: npm run bench:logs-read [-- --lines 1000000 --runs 3 --reads 4 --segment 16]
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { gzipSync } from 'node:zlib';
import { addProject, arg, finish, ms, pct, prepareEngine, root, startBerthd } from './lib.mjs';

const LINES = arg('lines', 1_000_000);
const RUNS = arg('runs', 3);
const READS = arg('reads', 4);
const SEGMENT = arg('segment', 16) * 1024 * 1024;

prepareEngine();
const b = await startBerthd('berth-bench-logsread-');
try {
  await addProject(b.client, b.home);
  await b.client.agents.define({ name: 'printer', command: ['sh', '-c', `seq 1 ${LINES}; exit 0`], restartPolicy: 'never' });
  const s = await b.client.sessions.start({ project: 'web', agent: 'printer', mode: 'read' });
  let cur = s;
  while (cur.state !== 'exited' && cur.state !== 'failed') {
    await new Promise((r) => setTimeout(r, 250));
    cur = await b.client.sessions.get({ id: s.id });
  }
  const container = cur.containerId;
  const dir = join(b.home, 'logs', s.id);
  let synthesized = false;
  if (!existsSync(dir)) {
    synthesized = true;
    mkdirSync(dir, { recursive: true });
    const p = spawn('docker', ['logs', '-t', container], { stdio: ['ignore', 'pipe', 'inherit'] });
    let n = 1;
    let parts = [];
    let size = 0;
    const close = (last) => {
      const text = parts.join('');
      const name = join(dir, `seg-${String(n).padStart(6, '0')}.jsonl`);
      if (last) writeFileSync(name, text);
      else writeFileSync(`${name}.gz`, gzipSync(text));
      n++;
      parts = [];
      size = 0;
    };
    for await (const l of createInterface({ input: p.stdout, crlfDelay: Infinity })) {
      const sp = l.indexOf(' ');
      const rec = `${JSON.stringify({ ts: l.slice(0, sp), stream: 'stdout', line: l.slice(sp + 1) })}\n`;
      parts.push(rec);
      size += rec.length;
      if (size >= SEGMENT) close(false);
    }
    close(true);
  }

  const wall = (cmd) => {
    const t = process.hrtime.bigint();
    execFileSync('sh', ['-c', cmd], { stdio: ['ignore', 'ignore', 'inherit'] });
    return ms(t);
  };
  const count = (cmd) => Number(execFileSync('sh', ['-c', `${cmd} | wc -l`], { encoding: 'utf8' }).trim());
  const berthCmd = `"${process.execPath}" "${join(root, 'client-sdk/bin/berth.js')}" --socket "${join(b.home, 'berth.sock')}" logs ${s.id}`;
  const dockerCmd = `docker logs ${container}`;
  const lines = { berth: count(`${berthCmd} 2>&1`), docker: count(`${dockerCmd} 2>&1`) };

  const rss0 = b.rssMiB();
  const times = { berth: [], docker: [] };
  for (let i = 0; i < RUNS; i++) {
    times.docker.push(wall(`${dockerCmd} >/dev/null 2>&1`));
    times.berth.push(wall(`${berthCmd} >/dev/null 2>&1`));
  }
  const rssAfterRuns = b.rssMiB();
  for (let i = 0; i < READS; i++) wall(`${berthCmd} >/dev/null 2>&1`);
  await new Promise((r) => setTimeout(r, 2000));
  const rssAfter = b.rssMiB();

  const med = (xs) => pct(xs, 50);
  const out = {
    lines: LINES,
    linesRead: lines,
    storeFromEngineLog: synthesized,
    dockerMs: Math.round(med(times.docker)),
    berthMs: Math.round(med(times.berth)),
    ratio: Number((med(times.berth) / med(times.docker)).toFixed(2)),
    rssMiB: { before: Math.round(rss0), afterTimedRuns: Math.round(rssAfterRuns), afterMoreReads: Math.round(rssAfter), reads: RUNS + READS + 1 },
  };
  console.log(JSON.stringify(out, null, 2));
  console.log(
    `berth logs ${out.berthMs} ms vs docker logs ${out.dockerMs} ms (${out.ratio}x) for ${LINES} lines; berthd RSS ${out.rssMiB.before} -> ${out.rssMiB.afterMoreReads} MiB after ${out.rssMiB.reads} full reads`,
  );
} finally {
  await finish(b);
}
