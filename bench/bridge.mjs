// bench/bridge: what the Claude bridge adds to a model call. A stand-in Messages API (its own
// process, loopback) is called directly and through a session's bridge socket, alternately, in the
// same run: p50/p99 of a JSON answer and of the first streamed byte (SSE), then throughput with
// --sessions sessions each calling --per times at once, bridged and direct.
// Usage: npm run bench:bridge [-- --calls 500 --sessions 50 --per 20]
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { join } from 'node:path';
import { addProject, arg, finish, ms, pct, prepareEngine, root, startBerthd } from './lib.mjs';

const CALLS = arg('calls', 500);
const SESSIONS = arg('sessions', 50);
const PER = arg('per', 20);

prepareEngine();
// The upstream runs in a process of its own, so neither side's event loop carries the other.
const upstream = spawn(process.execPath, ['--input-type=module', '-e', `
  const { ModelUpstream } = await import(${JSON.stringify(join(root, 'daemon/test/helpers/model-upstream.mjs'))});
  const u = await ModelUpstream.start({ record: false });
  console.log(u.port);
`], { stdio: ['ignore', 'pipe', 'inherit'] });
const port = await new Promise((r) => upstream.stdout.once('data', (d) => r(Number(String(d).trim()))));
const b = await startBerthd('bench-bridge-', { BERTH_MODEL_UPSTREAM: `http://127.0.0.1:${port}`, BERTH_MODEL_CREDENTIAL: 'secret:bench', BERTH_MODEL_MAX_INFLIGHT: String(Math.max(64, SESSIONS)) });

const body = (stream) => JSON.stringify({ model: 'claude-sonnet-4-5', max_tokens: 64, stream, messages: [{ role: 'user', content: 'hi' }] });
const JSON_BODY = body(false);
const SSE_BODY = body(true);

/** One call; resolves with [ms to the first body byte, ms to the end]. */
function call(target, agent, payload) {
  return new Promise((resolve, reject) => {
    const t = process.hrtime.bigint();
    let first = null;
    const req = request(
      { ...target, path: '/v1/messages', method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload), 'anthropic-version': '2023-06-01' } },
      (res) => {
        res.on('data', () => (first ??= ms(t)));
        res.on('end', () => (res.statusCode === 200 ? resolve([first, ms(t)]) : reject(new Error(`status ${res.statusCode}`))));
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

try {
  // A real credential path: the key is read from secrets.yaml and added to every call.
  writeFileSync(join(b.home, 'secrets.yaml'), 'bench: sk-ant-api03-bench-key\n', { mode: 0o600 });
  await addProject(b.client, b.home);
  await b.client.agents.define({ name: 'idle', command: ['sleep', '86400'], readOnly: true, network: 'none' });
  const ids = [];
  for (let i = 0; i < SESSIONS; i += 10) {
    const batch = await Promise.all(Array.from({ length: Math.min(10, SESSIONS - i) }, () => b.client.sessions.start({ project: 'web', agent: 'idle' })));
    ids.push(...batch.map((s) => s.id));
  }
  const socketOf = (id) => join(b.home, 'bridge', 'sessions', id, 'claude-bridge.sock');
  const direct = { host: '127.0.0.1', port };
  const bridged = { socketPath: socketOf(ids[0]) };
  const da = new Agent({ keepAlive: true, maxSockets: 1 });
  const ba = new Agent({ keepAlive: true, maxSockets: 1 });

  const lat = { direct: { json: [], ttfb: [] }, bridge: { json: [], ttfb: [] } };
  for (let i = 0; i < 50; i++) {
    await call(direct, da, JSON_BODY);
    await call(bridged, ba, JSON_BODY);
  }
  for (let i = 0; i < CALLS; i++) {
    lat.direct.json.push((await call(direct, da, JSON_BODY))[1]);
    lat.bridge.json.push((await call(bridged, ba, JSON_BODY))[1]);
    lat.direct.ttfb.push((await call(direct, da, SSE_BODY))[0]);
    lat.bridge.ttfb.push((await call(bridged, ba, SSE_BODY))[0]);
  }
  da.destroy();
  ba.destroy();

  async function throughput(targets) {
    const agents = targets.map(() => new Agent({ keepAlive: true, maxSockets: 1 }));
    const t = process.hrtime.bigint();
    await Promise.all(targets.map(async (target, k) => {
      for (let i = 0; i < PER; i++) await call(target, agents[k], JSON_BODY);
    }));
    const s = ms(t) / 1000;
    agents.forEach((a) => a.destroy());
    return (targets.length * PER) / s;
  }
  const directRate = await throughput(ids.map(() => direct));
  const bridgeRate = await throughput(ids.map((id) => ({ socketPath: socketOf(id) })));
  const directRate2 = await throughput(ids.map(() => direct));

  const row = (name, d, x) => {
    const [d50, d99, x50, x99] = [pct(d, 50), pct(d, 99), pct(x, 50), pct(x, 99)];
    console.log(`| ${name} | ${d50.toFixed(2)} / ${d99.toFixed(2)} ms | ${x50.toFixed(2)} / ${x99.toFixed(2)} ms | +${(x50 - d50).toFixed(2)} / +${(x99 - d99).toFixed(2)} ms | ${(x50 / d50).toFixed(2)}× |`);
  };
  console.log(`\nbench/bridge: ${CALLS} calls each way, alternating; ${SESSIONS} sessions × ${PER} calls for throughput\n`);
  console.log('| | direct p50 / p99 | bridged p50 / p99 | added p50 / p99 | ratio p50 |');
  console.log('|---|---|---|---|---|');
  row('JSON answer, whole', lat.direct.json, lat.bridge.json);
  row('SSE, first byte', lat.direct.ttfb, lat.bridge.ttfb);
  const directAvg = (directRate + directRate2) / 2;
  console.log(`| throughput, ${SESSIONS} sessions at once | ${directAvg.toFixed(0)} req/s | ${bridgeRate.toFixed(0)} req/s | | ${(bridgeRate / directAvg).toFixed(2)}× |`);
} finally {
  await finish(b).catch((e) => console.error(`bench: ${e.message}`));
  upstream.kill();
}
