#!/usr/bin/env node
// A Claude Code command hook (registered for every event in /etc/claude-code/managed-settings.json):
// `node /opt/berth/hook.mjs <Event>` reads the hook's JSON from stdin and reports it to berthd as
// `bridge.hook` on the Claude bridge (client-sdk/src/protocol/bridge.ts). It always exits 0 within a few
// seconds (a hook that fails or hangs would stall or break the agent) and prints nothing, but for one
// thing: when a graceful stop was asked for, the context that tells Claude Code to finish and end its
// turn. Only a few fields leave the container; never the prompt, the transcript or a tool's input or output.
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

/** Events whose hook may hand Claude Code context for its next step (hookSpecificOutput.additionalContext). */
const TELLS = new Set(['SessionStart', 'UserPromptSubmit', 'PostToolUse', 'PostToolUseFailure']);

/**
 * A graceful stop was asked for (`berth stop --graceful`): Claude Code is told on its next step.
 * Its turn's end (the Stop hook) then stops the session; nothing more is needed from the agent.
 */
function tell(answer) {
  let deadline;
  try {
    deadline = JSON.parse(answer)?.result?.stopRequested?.deadline;
  } catch {
    return '';
  }
  if (typeof deadline !== 'string' || !TELLS.has(event)) return '';
  const context =
    `berth: a graceful stop of this session was asked for (deadline ${deadline.slice(0, 40)}). ` +
    'Finish the unit of work you are on, leave the workspace consistent (commit what is done), and end your turn; ' +
    'do not start anything new. The session stops when your turn ends.';
  return JSON.stringify({ hookSpecificOutput: { hookEventName: event, additionalContext: context } });
}

const payload = pick(await readInput());
const body = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'bridge.hook', params: { event, payload } });
const req = request(
  { socketPath, path: '/rpc', method: 'POST', timeout: TIMEOUT_MS, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } },
  (res) => {
    let answer = '';
    res.setEncoding('utf8');
    res.on('data', (c) => {
      if (answer.length < 64 * 1024) answer += c;
    });
    res.on('end', () => {
      const out = tell(answer);
      if (out) process.stdout.write(out, done);
      else done();
    });
    res.on('error', done);
  },
);
req.on('timeout', () => req.destroy());
req.on('error', done);
req.end(body);
