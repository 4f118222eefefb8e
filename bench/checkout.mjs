// bench/checkout: a write session's start (its own checkout + branch + container, until running) on a
// generated repository of 5,000 files, next to raw `git worktree add` + `docker run -d` on the same
// repository in the same run; then 20 write sessions started at once.
// Usage: npm run bench:checkout [-- --n 10 --files 5000]
import { execFileSync } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { IMAGE, arg, dockerRunArgs, finish, generateRepo, ms, pct, prepareEngine, startBerthd } from './lib.mjs';

const N = arg('n', 10);
const FILES = arg('files', 5000);
const PARALLEL = arg('parallel', 20);

prepareEngine();
const b = await startBerthd('bench-co-');
const { home, client } = b;
// As on a workstation: the repository's owner can reach it (berthd's home stays 0700).
execFileSync('chmod', ['755', home]);
const repo = join(home, 'projects', 'big');
const g = generateRepo(repo, FILES);

try {
  await client.projects.add({ name: 'big', path: repo });
  await client.agents.define({ name: 'coder', command: ['sleep', '3600'] });
  const net = `berth-net-${(await client.daemon.status()).instanceId}-big`;
  const raw = (i) => {
    const wt = join(home, 'raw', `wt${i}`);
    g('worktree', 'add', '-q', '-b', `raw/${i}`, wt, 'main');
    const id = execFileSync('docker', dockerRunArgs({ workspace: wt, readonly: false, shared: join(home, 'shared'), volume: `bench-co-${i}`, network: net }), {
      encoding: 'utf8',
    }).trim();
    return { wt, id, branch: `raw/${i}`, volume: `bench-co-${i}` };
  };
  const cleanRaw = (r) => {
    execFileSync('docker', ['rm', '-f', r.id]);
    execFileSync('docker', ['volume', 'rm', '-f', r.volume]);
    g('worktree', 'remove', '--force', r.wt);
    g('branch', '-q', '-D', r.branch);
  };
  // Warm-up (network, caches).
  const w = await client.sessions.start({ project: 'big', agent: 'coder' });
  await client.sessions.remove({ id: w.id, deleteBranch: true });
  cleanRaw(raw(999));

  const berth = [];
  const rawT = [];
  for (let i = 0; i < N; i++) {
    let t = process.hrtime.bigint();
    const s = await client.sessions.start({ project: 'big', agent: 'coder' });
    berth.push(ms(t));
    if (s.state !== 'running' || !s.checkout) throw new Error(`session ${s.id}: ${s.state}`);
    t = process.hrtime.bigint();
    const r = raw(i);
    rawT.push(ms(t));
    await client.sessions.remove({ id: s.id, deleteBranch: true });
    cleanRaw(r);
  }

  const tp = process.hrtime.bigint();
  const many = await Promise.all(Array.from({ length: PARALLEL }, () => client.sessions.start({ project: 'big', agent: 'coder' })));
  const parallel = ms(tp);
  const ok = many.filter((s) => s.state === 'running' && s.checkout).length;
  await Promise.all(many.map((s) => client.sessions.remove({ id: s.id, deleteBranch: true })));

  const f = (x) => x.toFixed(0);
  console.log(`\nbench/checkout — ${cpus().length} cores, repository of ${FILES} files, image ${IMAGE}, ${N} starts each, interleaved\n`);
  console.log('| | p50 ms | p95 ms |');
  console.log('|---|---|---|');
  console.log(`| berth write session (own checkout + branch + container, until running) | ${f(pct(berth, 50))} | ${f(pct(berth, 95))} |`);
  console.log(`| git worktree add + docker run -d (same repo, image, limits, mounts) | ${f(pct(rawT, 50))} | ${f(pct(rawT, 95))} |`);
  console.log(`| ratio | ${(pct(berth, 50) / pct(rawT, 50)).toFixed(2)}× | ${(pct(berth, 95) / pct(rawT, 95)).toFixed(2)}× |`);
  console.log(`\n${PARALLEL} write sessions started at once: ${ok}/${PARALLEL} running with their own checkout after ${(parallel / 1000).toFixed(2)} s`);
} finally {
  await finish(b);
  execFileSync('sh', ['-c', 'docker network ls -q --filter label=dev.berth.project=big | xargs -r docker network rm'], { stdio: 'ignore' });
  rmSync(home, { recursive: true, force: true });
}
