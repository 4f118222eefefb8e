// bench/session-start: `sessions.start` (read session) until the container runs, next to
// `docker run -d` of the same image with the same limits, mounts and network, same machine, same run; then 50 sessions
// started at once: time until all run, and berthd's RSS.
// Usage: npm run bench:session-start [-- --n 20]   (needs Docker; builds the busybox test image)
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BerthClient } from '../client-sdk/dist/index.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const N = arg('n', 20);
const CONCURRENT = arg('concurrent', 50);
const IMAGE = 'berth-test-busybox:latest';

execFileSync('bash', [join(root, 'scripts/ensure-docker.sh')], { stdio: 'inherit' });
execFileSync('bash', [join(root, 'scripts/build-test-images.sh')], { stdio: 'inherit' });

const home = mkdtempSync(join(tmpdir(), 'bench-ss-'));
const repo = join(home, 'projects', 'bench');
mkdirSync(repo, { recursive: true });
execFileSync('git', ['init', '-q', '-b', 'main'], { cwd: repo });
execFileSync('git', ['-c', 'user.email=b@b', '-c', 'user.name=b', 'commit', '-q', '--allow-empty', '-m', 'init'], { cwd: repo });
execFileSync('chown', ['-R', '1000:1000', repo]);

const daemon = spawn(process.execPath, [join(root, 'daemon/bin/berthd.js'), '--log-level', 'warn'], {
  env: { ...process.env, BERTH_HOME: home, PROJECTS_ROOT: join(home, 'projects'), AGENT_DEFAULT_IMAGE: IMAGE, AGENT_MEMORY_LIMIT: '256m', AGENT_CPU_LIMIT: '1', AGENT_PIDS_LIMIT: '128' },
  stdio: ['ignore', 'ignore', 'inherit'],
});
const client = new BerthClient({ socketPath: join(home, 'berth.sock'), timeoutMs: 300_000 });
const pct = (xs, p) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))];
const ms = (t) => Number(process.hrtime.bigint() - t) / 1e6;
const rssMiB = () => {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${daemon.pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
};

try {
  for (let i = 0; i < 100; i++) {
    try {
      await client.daemon.status();
      break;
    } catch {
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  await client.projects.add({ name: 'bench', path: repo });
  await client.agents.define({ name: 'reader', command: ['sleep', '3600'], readOnly: true });

  const dockerArgs = [
    'run', '-d', '--init', '--cap-drop', 'ALL', '--security-opt', 'no-new-privileges:true', '--memory', '256m', '--memory-swap', '256m',
    '--cpus', '1', '--pids-limit', '128', '--user', '1000:1000', '--restart', 'no', '--log-opt', 'max-size=10m', '--log-opt', 'max-file=3',
    '--mount', `type=bind,source=${repo},target=/workspace,readonly`,
    '--mount', `type=bind,source=${join(home, 'shared')},target=/shared,readonly`,
    '--mount', 'type=volume,source=bench-raw-agent,target=/agent',
    '--network', 'berth-net-bench', '--label', 'dev.berth.test=true', IMAGE, 'sleep', '3600',
  ];
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
  client.close();
  daemon.kill('SIGTERM');
  await new Promise((r) => setTimeout(r, 500));
  const left = execFileSync('docker', ['ps', '-aq', '--filter', 'label=dev.berth.test=true'], { encoding: 'utf8' }).trim();
  if (left) execFileSync('docker', ['rm', '-f', ...left.split('\n')]);
  execFileSync('docker', ['volume', 'rm', '-f', 'bench-raw-agent'], { stdio: 'ignore' });
  execFileSync('docker', ['network', 'rm', 'berth-net-bench'], { stdio: 'ignore' });
  rmSync(home, { recursive: true, force: true });
}
