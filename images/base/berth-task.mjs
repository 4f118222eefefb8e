#!/usr/bin/env node
// /usr/local/bin/berth-task: the task methods of the Claude bridge (BridgeTaskMethods in
// client-sdk/src/protocol/tasks.ts) for scripted agents. The bridge socket is the session's identity,
// so nothing here names a task: a session claims one and then touches only that one.
//
// Exit status: 0 done; 2 usage (a bad option or value); 3 nothing to work on (claim found no open task,
// show found no task file); 4 this session holds no task, lost its lease, or reviews none
// (TASK_NOT_HELD, TASK_LEASE_LOST, TASK_NOT_REVIEWING); 1 anything else, berthd unreachable included.
// Errors go to stderr as `berth-task: CODE (rpc code): message`, escaped.
import { closeSync, constants, fstatSync, openSync, readSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import { BridgeError, bridgeSocket, callBridge, escapeText, safeJson } from './bridge-rpc.mjs';

/** MAX_TASK_NOTE: the longest summary, reason or note berthd takes (bytes of UTF-8). */
const MAX_NOTE = 16 * 1024;
const MAX_TASK_FILE = 4 * 1024 * 1024;
const LEASE = { min: 10, max: 86_400 };
/** Errors that say this session has nothing (any more) to act on: the agent should stop, not retry. */
const NOT_YOURS = new Set(['TASK_NOT_HELD', 'TASK_LEASE_LOST', 'TASK_NOT_REVIEWING']);

const USAGE = `usage: berth-task COMMAND [options]

  claim [--lease SEC]           the task this session holds or reviews, else claim the next open one;
                                prints it as JSON (exit 3 when no task is open)
  heartbeat [--lease SEC]       extend the lease of the task this session holds
  complete --summary TEXT       the task is done (or --summary-file FILE, - for stdin)
  fail --reason TEXT            give the task up as failed (or --reason-file FILE)
  release [--reason TEXT]       hand the task back for another attempt (or --reason-file FILE)
  approve [--notes TEXT]        as a pool's reviewer: approve the task under review (or --notes-file FILE)
  changes --notes TEXT          as a pool's reviewer: send it back with what to change (or --notes-file FILE)
  show                          the task a pool gave this session (/host/task.json: role and task), claiming
                                nothing (exit 3 when there is none)

  --lease SEC                   lease length, ${LEASE.min} to ${LEASE.max} seconds (default: what berthd set, 600)
  -q, --quiet                   print nothing on success
  -h, --help                    this text

Exit status: 0 done, 2 usage, 3 nothing open, 4 no task held / lease lost / not reviewing, 1 anything else.
`;

class Usage extends Error {}
class Exit extends Error {
  constructor(status, lines) {
    super(lines.join('\n'));
    this.status = status;
    this.lines = lines;
  }
}

/** Each command: its options and the bridge call they make. */
const COMMANDS = {
  claim: { options: ['lease'], call: (o) => ['tasks.claim', lease(o)] },
  heartbeat: { options: ['lease'], call: (o) => ['tasks.heartbeat', lease(o)] },
  complete: { options: ['summary'], call: (o) => ['tasks.complete', { summary: text(o, 'summary', true) }] },
  fail: { options: ['reason'], call: (o) => ['tasks.fail', { reason: text(o, 'reason', true) }] },
  release: { options: ['reason'], call: (o) => ['tasks.release', optional('reason', text(o, 'reason', false))] },
  approve: { options: ['notes'], call: (o) => ['tasks.review', { decision: 'approve', ...optional('notes', text(o, 'notes', false)) }] },
  changes: { options: ['notes'], call: (o) => ['tasks.review', { decision: 'changes', notes: text(o, 'notes', true) }] },
  show: { options: [], call: null },
};

function lease(o) {
  if (o.lease === undefined) return {};
  const n = Number(o.lease);
  if (!/^\d+$/.test(o.lease) || n < LEASE.min || n > LEASE.max) throw new Usage(`--lease is whole seconds from ${LEASE.min} to ${LEASE.max}, not ${JSON.stringify(escapeText(o.lease, 40))}`);
  return { leaseSec: n };
}

function optional(name, value) {
  return value === undefined ? {} : { [name]: value };
}

/** --NAME TEXT or --NAME-file FILE (one of them; `required` says whether neither is allowed). */
function text(o, name, required) {
  const inline = o[name];
  const file = o[`${name}-file`];
  if (inline !== undefined && file !== undefined) throw new Usage(`give --${name} or --${name}-file, not both`);
  if (file !== undefined) return readText(file, `--${name}-file`);
  if (inline === undefined && required) throw new Usage(`--${name} TEXT (or --${name}-file FILE) is required`);
  return inline;
}

/**
 * A summary, reason or note from a file (or stdin for `-`): at most MAX_NOTE bytes of UTF-8, so an
 * endless device ends too; opened without blocking so a FIFO with no writer does not hang the command.
 */
function readText(path, flag) {
  let fd;
  let opened = false;
  try {
    if (path === '-') fd = 0;
    else {
      fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
      opened = true;
      if (fstatSync(fd).isDirectory()) throw new Usage(`${flag} ${escapeText(path, 200)} is a directory`);
    }
    const buf = Buffer.alloc(MAX_NOTE + 1);
    let n = 0;
    for (;;) {
      let got;
      try {
        got = readSync(fd, buf, n, buf.length - n, null);
      } catch (err) {
        // stdin as a non-blocking pipe with nothing written yet: wait for it.
        if (err.code === 'EAGAIN') {
          Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20);
          continue;
        }
        throw err;
      }
      if (got === 0) break;
      n += got;
      if (n > MAX_NOTE) throw new Exit(1, [`berth-task: TASK_TOO_LARGE: ${flag} holds more than ${MAX_NOTE} bytes; the limit is ${MAX_NOTE}`]);
    }
    try {
      return new TextDecoder('utf-8', { fatal: true }).decode(buf.subarray(0, n));
    } catch {
      throw new Usage(`${flag} ${escapeText(path, 200)} is not UTF-8 text`);
    }
  } catch (err) {
    if (err instanceof Usage || err instanceof Exit) throw err;
    throw new Usage(`${flag} ${escapeText(path, 200)}: ${escapeText(err.code ?? err.message, 200)}`);
  } finally {
    if (opened) closeSync(fd);
  }
}

/** /host/task.json, written by berthd when a pool started this session for a task (or to review one). */
function show() {
  const file = join(dirname(bridgeSocket()), 'task.json');
  let fd;
  try {
    fd = openSync(file, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (err) {
    if (err.code === 'ENOENT') throw new Exit(3, [`berth-task: this session holds no task and reviews none (no ${file}); \`berth-task claim\` claims one`]);
    throw new Exit(1, [`berth-task: cannot read ${file}: ${escapeText(err.code ?? err.message, 200)}`]);
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile() || st.size > MAX_TASK_FILE) throw new Exit(1, [`berth-task: ${file} is not a task file berthd wrote (${st.isFile() ? `${st.size} bytes` : 'not a regular file'})`]);
    const buf = Buffer.alloc(st.size);
    let n = 0;
    while (n < buf.length) {
      const got = readSync(fd, buf, n, buf.length - n, null);
      if (got === 0) break;
      n += got;
    }
    try {
      return JSON.parse(buf.subarray(0, n).toString('utf8'));
    } catch {
      throw new Exit(1, [`berth-task: ${file} is not JSON`]);
    }
  } finally {
    closeSync(fd);
  }
}

function failure(err) {
  if (err instanceof BridgeError) {
    const status = NOT_YOURS.has(err.code) ? 4 : err.code === 'INVALID_PARAMS' ? 2 : 1;
    const lines = [`berth-task: ${err.code}${err.rpcCode === null ? '' : ` (${err.rpcCode})`}: ${escapeText(err.message)}`];
    if (err.hint) lines.push(`berth-task: hint: ${escapeText(err.hint)}`);
    return new Exit(status, lines);
  }
  return new Exit(1, [`berth-task: ${escapeText(err?.stack ?? err)}`]);
}

async function main(argv) {
  const [command, ...rest] = argv;
  if (command === undefined) throw new Usage('which command?');
  if (command === '-h' || command === '--help' || command === 'help') return { out: USAGE, status: 0 };
  const spec = Object.hasOwn(COMMANDS, command) ? COMMANDS[command] : undefined;
  if (!spec) throw new Usage(`unknown command ${JSON.stringify(escapeText(command, 40))}`);
  const options = { quiet: { type: 'boolean', short: 'q' }, help: { type: 'boolean', short: 'h' } };
  for (const name of spec.options) {
    options[name] = { type: 'string' };
    if (name !== 'lease') options[`${name}-file`] = { type: 'string' };
  }
  let values;
  try {
    ({ values } = parseArgs({ args: rest, options, strict: true, allowPositionals: false }));
  } catch (err) {
    throw new Usage(escapeText(err.message, 300));
  }
  if (values.help) return { out: USAGE, status: 0 };
  if (!spec.call) {
    const doc = show();
    return { out: values.quiet ? '' : `${safeJson(doc)}\n`, status: 0 };
  }
  const [method, params] = spec.call(values);
  let result;
  try {
    result = await callBridge(method, params);
  } catch (err) {
    throw failure(err);
  }
  const task = result && typeof result === 'object' ? result.task : undefined;
  if (task === undefined) throw new Exit(1, [`berth-task: BRIDGE_PROTOCOL: ${method} answered without a task`]);
  if (task === null) throw new Exit(3, ['berth-task: no open task to claim (every task is done, claimed, or waiting for its dependencies)']);
  return { out: values.quiet ? '' : `${safeJson(task)}\n`, status: 0 };
}

process.stdout.on('error', () => {}); // a reader that went away (| head) is not our failure
let outcome;
try {
  outcome = await main(process.argv.slice(2));
} catch (err) {
  if (err instanceof Usage) outcome = { err: `berth-task: ${err.message}\nusage: berth-task COMMAND [options] (berth-task --help lists them)\n`, status: 2 };
  else if (err instanceof Exit) outcome = { err: `${err.lines.join('\n')}\n`, status: err.status };
  else outcome = { err: `${failure(err).lines.join('\n')}\n`, status: 1 };
}
if (outcome.err) process.stderr.write(outcome.err);
const exit = () => process.exit(outcome.status);
if (outcome.out) process.stdout.write(outcome.out, exit);
else exit();
