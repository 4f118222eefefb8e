// bench/import: how long after agents commit their commits are on the project's berth/<name>
// branches. N write sessions of one project commit at once (one sessions.exec each, concurrently);
// the clock runs from the last commit's exec returning until every tip is on the host (polled with
// git for-each-ref every 20 ms). Next to it, in the same run, the same measure for one session
// committing alone. Usage: npm run bench:import [-- --sizes 20,50 --rounds 5]
import { execFileSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { finish, ms, pct, prepareEngine, startBerthd } from './lib.mjs';

const i = process.argv.indexOf('--sizes');
const SIZES = (i > 0 ? process.argv[i + 1] : '20,50').split(',').map(Number);
const j = process.argv.indexOf('--rounds');
const ROUNDS = j > 0 ? Number(process.argv[j + 1]) : 5;
const MAX = Math.max(...SIZES);

prepareEngine();
const b = await startBerthd('bench-imp-', { AGENT_MEMORY_LIMIT: '64m', AGENT_CPU_LIMIT: '0.5' });
const { home, client } = b;
execFileSync('chmod', ['711', home]);
const project = `bi${process.pid}`;
const repo = join(home, 'projects', project);
mkdirSync(repo, { recursive: true });
const g = (...a) => execFileSync('git', ['-c', 'safe.directory=*', '-c', 'user.email=b@b', '-c', 'user.name=b', ...a], { cwd: repo, encoding: 'utf8' });
g('init', '-q', '-b', 'main');
g('commit', '-q', '--allow-empty', '-m', 'init');
execFileSync('chown', ['-R', '1000:1000', repo]);
const tips = () => {
  const m = new Map();
  for (const line of g('for-each-ref', '--format=%(objectname) %(refname:short)', 'refs/heads/berth/').split('\n')) {
    const [sha, ref] = line.split(' ');
    if (ref) m.set(ref, sha);
  }
  return m;
};

/** Commits once in each of `sessions` at once; ms from the last commit until all are on the host. */
async function round(sessions, tag) {
  const done = await Promise.all(
    sessions.map(async (s) => {
      const r = await client.sessions.exec({ id: s.id, cmd: ['sh', '-c', `echo ${tag} >> work.txt && git add work.txt && git commit -qm ${tag} && git rev-parse HEAD`] });
      if (r.exitCode !== 0) throw new Error(`commit in ${s.name}: ${r.stderr}`);
      return { s, sha: r.stdout.trim(), at: process.hrtime.bigint() };
    }),
  );
  const last = done.reduce((a, d) => (d.at > a ? d.at : a), 0n);
  for (;;) {
    const have = tips();
    if (done.every((d) => have.get(d.s.checkout.branch) === d.sha)) return ms(last);
    if (ms(last) > 120_000) throw new Error(`${tag}: not all on the host after 120 s`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

try {
  await client.projects.add({ name: project, path: repo });
  await client.agents.define({ name: 'coder', command: ['sleep', '3600'] });
  const sessions = [];
  for (let k = 0; k < MAX; k += 10) {
    sessions.push(...(await Promise.all(Array.from({ length: Math.min(10, MAX - k) }, () => client.sessions.start({ project, agent: 'coder' })))));
  }
  await round(sessions.slice(0, 1), 'warm');
  const rows = [];
  const single = [];
  for (let r = 0; r < ROUNDS; r++) single.push(await round(sessions.slice(0, 1), `single-${r}`));
  for (const n of SIZES) {
    const t = [];
    for (let r = 0; r < ROUNDS; r++) {
      t.push(await round(sessions.slice(0, n), `n${n}-${r}`));
      single.push(await round(sessions.slice(0, 1), `single-${n}-${r}`));
    }
    rows.push({ n, t });
  }
  const f = (x) => x.toFixed(0);
  const s50 = pct(single, 50);
  console.log(`\nbench/import — ${cpus().length} cores, ${ROUNDS} rounds, time from the last commit until every commit is on the host\n`);
  console.log('| sessions committing at once | p50 ms | max ms | p50 / single import p50 |');
  console.log('|---|---|---|---|');
  console.log(`| 1 (single import, interleaved with the rounds below) | ${f(s50)} | ${f(Math.max(...single))} | 1.00× |`);
  for (const { n, t } of rows) console.log(`| ${n} | ${f(pct(t, 50))} | ${f(Math.max(...t))} | ${(pct(t, 50) / s50).toFixed(2)}× |`);
} finally {
  await finish(b);
  execFileSync('sh', ['-c', `docker network ls -q --filter label=dev.berth.project=${project} | xargs -r docker network rm`], { stdio: 'ignore' });
}
