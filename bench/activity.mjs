// bench/activity: what watching agents costs. --sessions idle sessions (busybox sleep, --on-stuck
// none, so they stay quiet, past half their stuck timeout, and are looked at closely on every
// check: the worst case) measured for --idle seconds with activity checks off (one an hour) and on
// (every --check seconds): berthd's CPU and RSS. Then the latency from a Claude Code hook posted
// on a session's bridge socket to its session.activity line on /events.
// Usage: npm run bench:activity [-- --sessions 50 --idle 60 --check 15 --hooks 200]
import { execFileSync, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { BerthClient } from '../client-sdk/dist/index.js';
import { addProject, arg, finish, ms, pct, prepareEngine, root, startBerthd } from './lib.mjs';

const SESSIONS = arg('sessions', 50);
const IDLE_S = arg('idle', 60);
const CHECK_S = arg('check', 15);
const HOOKS = arg('hooks', 200);

prepareEngine();
const HZ = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
const cpuTicks = (pid) => {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return Number(f[11]) + Number(f[12]);
};

async function idleCost(b, seconds = IDLE_S) {
  await new Promise((r) => setTimeout(r, 3000));
  const c0 = cpuTicks(b.daemon.pid);
  const t0 = Date.now();
  await new Promise((r) => setTimeout(r, seconds * 1000));
  return { cpu: (cpuTicks(b.daemon.pid) - c0) / HZ / ((Date.now() - t0) / 1000), rss: b.rssMiB() };
}

async function restart(b, env) {
  const exited = new Promise((r) => b.daemon.once('exit', r));
  b.daemon.kill('SIGTERM');
  await exited;
  return startAgain(b, env);
}

async function startAgain(b, env) {
  b.daemon = spawn(process.execPath, [join(root, 'daemon/bin/berthd.js'), '--log-level', 'warn'], {
    env: { ...process.env, BERTH_HOME: b.home, PROJECTS_ROOT: join(b.home, 'projects'), AGENT_DEFAULT_IMAGE: 'berth-test-busybox:latest', AGENT_MEMORY_LIMIT: '64m', BERTH_MAX_RUNNING: '0', ...env },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  b.client = new BerthClient({ socketPath: join(b.home, 'berth.sock'), timeoutMs: 600_000 });
  for (;;) {
    try {
      await b.client.daemon.status();
      break;
    } catch {
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  b.rssMiB = () => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${b.daemon.pid}/status`, 'utf8'))[1]) / 1024;
}

function hook(socketPath, event) {
  return new Promise((resolve, reject) => {
    const body = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'bridge.hook', params: { event, payload: { message: 'bench' } } });
    const req = request({ socketPath, path: '/rpc', method: 'POST', headers: { 'content-type': 'application/json' } }, (res) => {
      res.resume();
      res.on('end', resolve);
    });
    req.on('error', reject);
    req.end(body);
  });
}

const b = await startBerthd('bench-activity-', { AGENT_MEMORY_LIMIT: '64m', BERTH_ACTIVITY_CHECK_SEC: '3600' });
try {
  await addProject(b.client, b.home);
  await b.client.agents.define({ name: 'quiet', command: ['sleep', '86400'], readOnly: true, stuckAfterSec: 10, onStuck: 'none' });
  const ids = [];
  for (let i = 0; i < SESSIONS; i += 10) {
    const batch = await Promise.all(Array.from({ length: Math.min(10, SESSIONS - i) }, () => b.client.sessions.start({ project: 'web', agent: 'quiet' })));
    ids.push(...batch.map((s) => s.id));
  }
  // Both measured on a berthd just restarted over the same sessions, the same time after its start.
  b.client.close();
  await restart(b, { BERTH_ACTIVITY_CHECK_SEC: '3600' });
  const offFirst = await idleCost(b, 2 * CHECK_S + 5);
  const off = await idleCost(b);
  b.client.close();
  await restart(b, { BERTH_ACTIVITY_CHECK_SEC: String(CHECK_S) });
  // The first two checks look at every session closely (a new berthd gathers its evidence again)
  // and call them stuck; measured both then and after, when each stuck one is looked at once a minute.
  const first = await idleCost(b, 2 * CHECK_S + 5);
  const on = await idleCost(b);

  // Hook → /events.
  const ac = new AbortController();
  const waiting = new Map();
  void (async () => {
    for await (const e of b.client.events({ signal: ac.signal })) {
      if (e.type === 'session.activity' && waiting.has(e.data.id)) {
        waiting.get(e.data.id)();
        waiting.delete(e.data.id);
      }
    }
  })().catch(() => {});
  await new Promise((r) => setTimeout(r, 500));
  const lat = [];
  const turns = new Map();
  for (let i = 0; i < HOOKS; i++) {
    const id = ids[i % ids.length];
    // Each hook changes the session's state (waiting-input ↔ idle), so each makes an event.
    const n = (turns.get(id) ?? 0) + 1;
    turns.set(id, n);
    const t = process.hrtime.bigint();
    const seen = new Promise((r) => waiting.set(id, r));
    await hook(join(b.home, 'bridge', 'sessions', id, 'claude-bridge.sock'), n % 2 ? 'Notification' : 'Stop');
    await Promise.race([seen, new Promise((_, reject) => setTimeout(() => reject(new Error(`no session.activity for ${id} within 10 s`)), 10_000))]);
    lat.push(ms(t));
  }
  ac.abort();

  console.log(`\nbench/activity: ${SESSIONS} idle sessions, ${IDLE_S} s each way; checks every ${CHECK_S} s, every session looked at closely\n`);
  console.log('| | checks off | checks on | added | goal |');
  console.log('|---|---|---|---|---|');
  console.log(`| berthd CPU, first ${2 * CHECK_S + 5} s after a restart (every session looked at twice) | ${(offFirst.cpu * 100).toFixed(2)} % | ${(first.cpu * 100).toFixed(2)} % | +${((first.cpu - offFirst.cpu) * 100).toFixed(2)} % | |`);
  console.log(`| berthd CPU, then (${IDLE_S} s) | ${(off.cpu * 100).toFixed(2)} % | ${(on.cpu * 100).toFixed(2)} % | +${((on.cpu - off.cpu) * 100).toFixed(2)} % | ≤ 1 % |`);
  console.log(`| berthd RSS | ${off.rss.toFixed(0)} MiB | ${on.rss.toFixed(0)} MiB | +${(on.rss - off.rss).toFixed(0)} MiB | ≤ 30 MB |`);
  console.log(`| hook → session.activity on /events, p50 / p99 | | ${pct(lat, 50).toFixed(1)} / ${pct(lat, 99).toFixed(1)} ms | | p50 ≤ 100 ms |`);
} finally {
  await finish(b).catch((e) => console.error(`bench: ${e.message}`));
}
