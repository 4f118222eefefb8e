// bench/checkout: a write session's start (its own checkout + branch + container, until running) on a
// generated repository of 5,000 files, next to raw `git worktree add` + `docker run -d` on the same
// repository in the same run; then 20 write sessions started at once.
// Usage: npm run bench:checkout [-- --n 10 --files 5000]
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BerthClient } from '../client-sdk/dist/index.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const N = arg('n', 10);
const FILES = arg('files', 5000);
const PARALLEL = arg('parallel', 20);
const IMAGE = 'berth-test-busybox:latest';

execFileSync('bash', [join(root, 'scripts/ensure-docker.sh')], { stdio: 'inherit' });
execFileSync('bash', [join(root, 'scripts/build-test-images.sh')], { stdio: 'inherit' });

const home = mkdtempSync(join(tmpdir(), 'bench-co-'));
// As on a workstation: the repository's owner can reach it (berthd's home stays 0700).
execFileSync('chmod', ['755', home]);
const repo = join(home, 'projects', 'big');
mkdirSync(repo, { recursive: true });
const g = (...a) => execFileSync('git', ['-c', 'safe.directory=*', '-c', 'user.email=b@b', '-c', 'user.name=b', ...a], { cwd: repo, encoding: 'utf8' });
g('init', '-q', '-b', 'main');
for (let i = 0; i < FILES; i++) {
  const d = join(repo, `dir${i % 50}`);
  mkdirSync(d, { recursive: true });
  writeFileSync(join(d, `file${i}.txt`), `file ${i}\n${'x'.repeat(200)}\n`);
}
g('add', '-A');
g('commit', '-q', '-m', 'generated');
execFileSync('chown', ['-R', '1000:1000', repo]);

const daemon = spawn(process.execPath, [join(root, 'daemon/bin/berthd.js'), '--log-level', 'warn'], {
  env: { ...process.env, BERTH_HOME: home, PROJECTS_ROOT: join(home, 'projects'), AGENT_DEFAULT_IMAGE: IMAGE, AGENT_MEMORY_LIMIT: '256m', AGENT_CPU_LIMIT: '1', AGENT_PIDS_LIMIT: '128' },
  stdio: ['ignore', 'ignore', 'inherit'],
});
const client = new BerthClient({ socketPath: join(home, 'berth.sock'), timeoutMs: 600_000 });
const pct = (xs, p) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))];
const ms = (t) => Number(process.hrtime.bigint() - t) / 1e6;

try {
  for (let i = 0; i < 100; i++) {
    try {
      await client.daemon.status();
      break;
    } catch {
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  await client.projects.add({ name: 'big', path: repo });
  await client.agents.define({ name: 'coder', command: ['sleep', '3600'] });
  const raw = (i) => {
    const wt = join(home, 'raw', `wt${i}`);
    g('worktree', 'add', '-q', '-b', `raw/${i}`, wt, 'main');
    const id = execFileSync('docker', [
      'run', '-d', '--init', '--cap-drop', 'ALL', '--security-opt', 'no-new-privileges:true', '--memory', '256m', '--memory-swap', '256m',
      '--cpus', '1', '--pids-limit', '128', '--user', '1000:1000', '--restart', 'no', '--log-opt', 'max-size=10m', '--log-opt', 'max-file=3',
      '--mount', `type=bind,source=${wt},target=/workspace`, '--mount', `type=bind,source=${join(home, 'shared')},target=/shared,readonly`,
      '--mount', `type=volume,source=bench-co-${i},target=/agent`, '--network', 'berth-net-big', '--label', 'dev.berth.test=true', IMAGE, 'sleep', '3600',
    ], { encoding: 'utf8' }).trim();
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
  client.close();
  daemon.kill('SIGTERM');
  await new Promise((r) => setTimeout(r, 500));
  const left = execFileSync('docker', ['ps', '-aq', '--filter', 'label=dev.berth.test=true'], { encoding: 'utf8' }).trim();
  if (left) execFileSync('docker', ['rm', '-f', ...left.split('\n')]);
  rmSync(home, { recursive: true, force: true });
}
