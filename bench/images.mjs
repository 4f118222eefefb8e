// bench/images: building images/base (prod) through berth (images.build over the Engine API, with
// progress streamed to the caller) next to `docker build` of the same Dockerfile, context, target,
// build args and labels through the CLI, same machine, same run, interleaved:
//   cold   — every step runs (berth noCache, docker build --no-cache); the base image is local
//   cached — an unchanged rebuild (every step from the layer cache)
// Usage: npm run bench:images [-- --cold 3 --cached 5 --base IMAGE --task-master 0|1]
// Default base: the offline base (scripts/build-offline-base.sh), as no registry answers here.
import { execFileSync, spawnSync } from 'node:child_process';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { readCaCerts } from '../daemon/dist/images/ca.js';
import { arg, finish, ms, pct, prepareEngine, root, startBerthd } from './lib.mjs';

const COLD = arg('cold', 3);
const CACHED = arg('cached', 5);
const strArg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : dflt;
};
const BASE = strArg('base', 'berth-offline-base:bookworm');
const TASK_MASTER = strArg('task-master', '0');
const BERTH_TAG = 'claude-agent-base:bench-berth';
const CLI_TAG = 'claude-agent-base:bench-cli';

prepareEngine();
if (BASE === 'berth-offline-base:bookworm') execFileSync('bash', [join(root, 'scripts/build-offline-base.sh'), BASE], { stdio: 'inherit' });
const b = await startBerthd('bench-img-');
const { client } = b;

const dir = join(root, 'images/base');
const certs = await readCaCerts('/usr/local/share/ca-certificates');
const buildArgs = { BASE_IMAGE: BASE, TASK_MASTER, VARIANT: 'prod', ...(certs.length ? { EXTRA_CA_CERTS: certs.join('\n') } : {}) };
const labels = { 'dev.berth.image': 'true', 'dev.berth.image.variant': 'prod', 'dev.berth.image.stack': 'base' };

async function viaBerth(noCache) {
  const t = process.hrtime.bigint();
  let lines = 0;
  await client.buildImage({ name: BERTH_TAG, stack: 'base', variant: 'prod', buildArgs, noCache }, () => lines++);
  const took = ms(t);
  remember(BERTH_TAG);
  return { ms: took, lines };
}

function viaCli(noCache) {
  const args = ['build', '--target', 'prod', '-t', CLI_TAG, '--rm', '--force-rm'];
  for (const [k, v] of Object.entries(buildArgs)) args.push('--build-arg', `${k}=${v}`);
  for (const [k, v] of Object.entries(labels)) args.push('--label', `${k}=${v}`);
  if (noCache) args.push('--no-cache');
  args.push(dir);
  const t = process.hrtime.bigint();
  const r = spawnSync('docker', args, { encoding: 'utf8', env: { ...process.env, DOCKER_BUILDKIT: '0' }, maxBuffer: 64 << 20 });
  const took = ms(t);
  if (r.status !== 0) throw new Error(`docker build failed: ${r.stderr.slice(-2000)}`);
  remember(CLI_TAG);
  return { ms: took, lines: r.stdout.split('\n').length };
}

const results = { berth: { cold: [], cached: [] }, cli: { cold: [], cached: [] } };
// Every no-cache build leaves the previous image untagged; all of them go at the end.
const built = new Set();
const remember = (tag) => built.add(execFileSync('docker', ['image', 'inspect', '-f', '{{.Id}}', tag], { encoding: 'utf8' }).trim());
try {
  // Warm-up: both tags exist and the cache is full before the cached rounds.
  await viaBerth(false);
  viaCli(false);
  for (let i = 0; i < COLD; i++) {
    // Alternate who goes first, so mirror and page-cache warmth favour neither.
    const order = i % 2 === 0 ? ['berth', 'cli'] : ['cli', 'berth'];
    for (const who of order) {
      const r = who === 'berth' ? await viaBerth(true) : viaCli(true);
      results[who].cold.push(r.ms);
      console.error(`cold ${who} ${i + 1}/${COLD}: ${(r.ms / 1000).toFixed(1)} s`);
    }
  }
  for (let i = 0; i < CACHED; i++) {
    results.berth.cached.push((await viaBerth(false)).ms);
    results.cli.cached.push(viaCli(false).ms);
  }

  const s = (x) => (x / 1000).toFixed(1);
  const m = (x) => x.toFixed(0);
  const ratio = (a, b) => (pct(a, 50) / pct(b, 50)).toFixed(2);
  const engine = execFileSync('docker', ['version', '-f', '{{.Server.Version}}'], { encoding: 'utf8' }).trim();
  console.log(
    `\nbench/images — ${cpus().length} cores, Docker ${engine} (classic builder on both sides), images/base prod on ${BASE}, TASK_MASTER=${TASK_MASTER}, ${COLD} cold and ${CACHED} cached builds each, interleaved\n`,
  );
  console.log('| | berth images.build | docker build (CLI) | ratio (p50) |');
  console.log('|---|---|---|---|');
  console.log(
    `| cold (no cache), s: p50 / min / max | ${s(pct(results.berth.cold, 50))} / ${s(Math.min(...results.berth.cold))} / ${s(Math.max(...results.berth.cold))} | ${s(pct(results.cli.cold, 50))} / ${s(Math.min(...results.cli.cold))} / ${s(Math.max(...results.cli.cold))} | ${ratio(results.berth.cold, results.cli.cold)}× |`,
  );
  console.log(
    `| cached, ms: p50 / max | ${m(pct(results.berth.cached, 50))} / ${m(Math.max(...results.berth.cached))} | ${m(pct(results.cli.cached, 50))} / ${m(Math.max(...results.cli.cached))} | ${ratio(results.berth.cached, results.cli.cached)}× |`,
  );
} finally {
  await finish(b);
  spawnSync('docker', ['rmi', BERTH_TAG, CLI_TAG], { stdio: 'ignore' });
  if (built.size) spawnSync('docker', ['rmi', ...built], { stdio: 'ignore' });
}
