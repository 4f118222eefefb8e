// bench/boundary: what the agent-boundary defences cost on the normal path. The current berthd and
// the berthd before them (--before REV, default 80a0731) run side by side in the same run, each with
// its own copy of a generated 5,000-file repository: a write session's start (until running), then
// sessions.status and sessions.diff with a few modified and new files, interleaved. The raw tool
// (git status / git diff run directly in the checkout) is measured in the same run.
// Usage: npm run bench:boundary [-- --n 10 --calls 30 --files 5000 --before REV]
import { execFileSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { arg, buildRevision, finish, generateRepo, ms, pct, prepareEngine, root, startBerthd } from './lib.mjs';

const N = arg('n', 10);
const CALLS = arg('calls', 30);
const FILES = arg('files', 5000);
const bi = process.argv.indexOf('--before');
const BEFORE = bi > 0 ? process.argv[bi + 1] : '80a0731';

prepareEngine();

const old = buildRevision(BEFORE);

async function side(label, bin) {
  const b = await startBerthd(`bench-bd-${label}-`, {}, bin);
  execFileSync('chmod', ['711', b.home]);
  const project = `bb${label}${process.pid}`;
  const repo = join(b.home, 'projects', project);
  generateRepo(repo, FILES);
  await b.client.projects.add({ name: project, path: repo });
  await b.client.agents.define({ name: 'coder', command: ['sleep', '3600'] });
  return { ...b, label, project, repo, start: [], status: [], diff: [] };
}

const sides = [await side('before', join(old, 'daemon/bin/berthd.js')), await side('after', join(root, 'daemon/bin/berthd.js'))];
const raw = { status: [], diff: [] };
try {
  // Starts, interleaved.
  for (let i = 0; i < N; i++) {
    for (const s of sides) {
      const t = process.hrtime.bigint();
      const x = await s.client.sessions.start({ project: s.project, agent: 'coder' });
      s.start.push(ms(t));
      if (x.state !== 'running' || !x.checkout) throw new Error(`${s.label}: session ${x.id} is ${x.state}`);
      await s.client.sessions.remove({ id: x.id, force: true, deleteBranch: true });
    }
  }
  // One session each with work in it: 5 files changed, 5 new, one commit.
  for (const s of sides) {
    s.session = await s.client.sessions.start({ project: s.project, agent: 'coder' });
    const r = await s.client.sessions.exec({
      id: s.session.id,
      cmd: ['sh', '-c', 'for i in 1 2 3 4 5; do echo change >> dir$i/file$i.txt; echo new > new$i.txt; done; git add dir1 && git -c user.name=b -c user.email=b@b commit -qm one'],
    });
    if (r.exitCode !== 0) throw new Error(r.stderr);
    await s.client.sessions.status({ id: s.session.id });
    await s.client.sessions.diff({ id: s.session.id });
  }
  const dir = sides[1].session.checkout.dir;
  const rg = (...a) => execFileSync('git', ['-c', 'safe.directory=*', ...a], { cwd: dir, encoding: 'utf8', maxBuffer: 64 << 20 });
  for (let i = 0; i < CALLS; i++) {
    for (const s of sides) {
      let t = process.hrtime.bigint();
      await s.client.sessions.status({ id: s.session.id });
      s.status.push(ms(t));
      t = process.hrtime.bigint();
      await s.client.sessions.diff({ id: s.session.id });
      s.diff.push(ms(t));
    }
    let t = process.hrtime.bigint();
    rg('status', '--porcelain');
    raw.status.push(ms(t));
    t = process.hrtime.bigint();
    rg('add', '-N', '.');
    rg('diff', 'main');
    raw.diff.push(ms(t));
    rg('reset', '-q');
  }
  const [before, after] = sides;
  const f = (x) => x.toFixed(1);
  const row = (what, a, b, r) =>
    console.log(`| ${what} | ${f(pct(b, 50))} | ${f(pct(a, 50))} | ${r ? f(pct(r, 50)) : '—'} | ${(pct(a, 50) / pct(b, 50)).toFixed(2)}× | ${r ? `${(pct(a, 50) / pct(r, 50)).toFixed(2)}×` : '—'} |`);
  console.log(`\nbench/boundary — ${cpus().length} cores, ${FILES}-file repository, before = ${BEFORE}, ${N} starts and ${CALLS} calls each, interleaved (p50 ms)\n`);
  console.log('| operation | before | after | raw git | after / before | after / raw |');
  console.log('|---|---|---|---|---|---|');
  row('write-session start (checkout + branch + container, until running)', after.start, before.start, null);
  row('sessions.status (5 changed, 5 new, 1 commit ahead)', after.status, before.status, raw.status);
  row('sessions.diff (same)', after.diff, before.diff, raw.diff);
} finally {
  for (const s of sides) {
    await finish(s).catch((e) => console.error(`bench: ${s.label}: ${e.message}`));
    execFileSync('sh', ['-c', `docker network ls -q --filter label=dev.berth.project=${s.project} | xargs -r docker network rm`], { stdio: 'ignore' });
  }
  rmSync(old, { recursive: true, force: true });
}
