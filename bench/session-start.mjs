// bench/session-start: `sessions.start` (read session) until the container runs, next to
// `docker run -d` of the same image with the same limits, mounts and network, same machine, same run; then 50 sessions
// started at once: time until all run, and berthd's RSS.
// Usage: npm run bench:session-start [-- --n 20]   (needs Docker; builds the busybox test image)
import { execFileSync } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { IMAGE, arg, dockerRunArgs, finish, ms, pct, prepareEngine, startBerthd } from './lib.mjs';

const N = arg('n', 20);
const CONCURRENT = arg('concurrent', 50);

prepareEngine();
const b = await startBerthd('bench-ss-');
const { home, client, rssMiB } = b;
const repo = join(home, 'projects', 'bench');
mkdirSync(repo, { recursive: true });
execFileSync('git', ['init', '-q', '-b', 'main'], { cwd: repo });
execFileSync('git', ['-c', 'user.email=b@b', '-c', 'user.name=b', 'commit', '-q', '--allow-empty', '-m', 'init'], { cwd: repo });
execFileSync('chown', ['-R', '1000:1000', repo]);

try {
  await client.projects.add({ name: 'bench', path: repo });
  await client.agents.define({ name: 'reader', command: ['sleep', '3600'], readOnly: true });

  const net = `berth-net-${(await client.daemon.status()).instanceId}-bench`;
  const dockerArgs = dockerRunArgs({ workspace: repo, readonly: true, shared: join(home, 'shared'), volume: 'bench-raw-agent', network: net });

  // Warm both paths once (image cache; berth creates the project network the raw runs join too).
  const w = await client.sessions.start({ project: 'bench', agent: 'reader' });
  execFileSync('docker', ['rm', '-f', execFileSync('docker', dockerArgs, { encoding: 'utf8' }).trim()]);
  await client.sessions.remove({ id: w.id });

  const berth = [];
  const raw = [];
  for (let i = 0; i < N; i++) {
    // Interleave so both see the same machine state.
    let t = process.hrtime.bigint();
    const s = await client.sessions.start({ project: 'bench', agent: 'reader' });
    berth.push(ms(t));
    if (s.state !== 'running') throw new Error(`session ${s.id} is ${s.state}`);
    t = process.hrtime.bigint();
    const id = execFileSync('docker', dockerArgs, { encoding: 'utf8' }).trim();
    raw.push(ms(t));
    await client.sessions.remove({ id: s.id });
    execFileSync('docker', ['rm', '-f', id]);
  }

  const t50 = process.hrtime.bigint();
  const many = await Promise.all(Array.from({ length: CONCURRENT }, () => client.sessions.start({ project: 'bench', agent: 'reader' })));
  const allRunning = ms(t50);
  const running = many.filter((s) => s.state === 'running').length;
  const rss = rssMiB();
  await Promise.all(many.map((s) => client.sessions.remove({ id: s.id })));

  const f = (x) => x.toFixed(0);
  console.log(`\nbench/session-start — ${cpus().length} cores, Docker ${execFileSync('docker', ['version', '-f', '{{.Server.Version}}'], { encoding: 'utf8' }).trim()}, image ${IMAGE}, ${N} starts each, interleaved\n`);
  console.log('| | p50 ms | p95 ms |');
  console.log('|---|---|---|');
  console.log(`| berth sessions.start (read session, until running) | ${f(pct(berth, 50))} | ${f(pct(berth, 95))} |`);
  console.log(`| docker run -d (same image, limits, mounts, network) | ${f(pct(raw, 50))} | ${f(pct(raw, 95))} |`);
  console.log(`| ratio | ${(pct(berth, 50) / pct(raw, 50)).toFixed(2)}× | ${(pct(berth, 95) / pct(raw, 95)).toFixed(2)}× |`);
  console.log(`\n${CONCURRENT} sessions started at once: all running after ${(allRunning / 1000).toFixed(2)} s (${running}/${CONCURRENT} running); berthd RSS ${rss.toFixed(0)} MiB`);
} finally {
  await finish(b);
  execFileSync('docker', ['volume', 'rm', '-f', 'bench-raw-agent'], { stdio: 'ignore' });
  execFileSync('sh', ['-c', 'docker network ls -q --filter name=berth-net- --filter label=dev.berth.project=bench | xargs -r docker network rm'], { stdio: 'ignore' });
  rmSync(home, { recursive: true, force: true });
}
