#!/usr/bin/env node
// A Claude Code command hook (registered for every event in /etc/claude-code/managed-settings.json):
// `node /opt/berth/hook.mjs <Event>` reads the hook's JSON from stdin and reports it to berthd as
// `bridge.hook` on the Claude bridge (client-sdk/src/protocol/bridge.ts). It prints nothing and always
// exits 0 within a few seconds: Claude Code adds a SessionStart/UserPromptSubmit hook's stdout to the
// model's context, and a hook that fails or hangs would stall or break the agent. Only a few fields
// leave the container; never the prompt, the transcript or a tool's input or output.
import { request } from 'node:http';

const MAX_INPUT = 1024 * 1024;
const TIMEOUT_MS = 2000;
const KEEP = ['hook_event_name', 'session_id', 'message', 'notification_type', 'tool_name', 'stop_hook_active'];
const MAX_FIELD = 2000;

const done = () => process.exit(0);
// Whatever happens below, the hook is over after this.
setTimeout(done, TIMEOUT_MS + 1500);
process.on('uncaughtException', done);
process.on('unhandledRejection', done);

const event = String(process.argv[2] ?? '').slice(0, 100);
const socketPath = process.env.CLAUDE_BRIDGE_SOCKET;
if (!socketPath || !event) done();

/** stdin up to MAX_INPUT bytes (null past that, or when it does not end in time). */
function readInput() {
  return new Promise((resolve) => {
    const chunks = [];
    let size = 0;
    const finish = (v) => {
      clearTimeout(timer);
      resolve(v);
    };
    const timer = setTimeout(() => finish(null), TIMEOUT_MS);
    process.stdin.on('data', (c) => {
      size += c.length;
      if (size > MAX_INPUT) finish(null);
      else chunks.push(c);
    });
    process.stdin.on('end', () => finish(Buffer.concat(chunks).toString('utf8')));
    process.stdin.on('error', () => finish(null));
  });
}

function pick(text) {
  let input;
  try {
    input = JSON.parse(text ?? '');
  } catch {
    return {};
  }
  if (!input || typeof input !== 'object') return {};
  const out = {};
  for (const k of KEEP) {
    const v = input[k];
    if (typeof v === 'string') out[k] = v.slice(0, MAX_FIELD);
    else if (typeof v === 'boolean') out[k] = v;
  }
  return out;
}

const payload = pick(await readInput());
const body = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'bridge.hook', params: { event, payload } });
const req = request(
  { socketPath, path: '/rpc', method: 'POST', timeout: TIMEOUT_MS, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } },
  (res) => {
    res.resume();
    res.on('end', done);
    res.on('error', done);
  },
);
req.on('timeout', () => req.destroy());
req.on('error', done);
req.end(body);
