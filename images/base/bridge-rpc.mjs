// JSON-RPC 2.0 on the Claude bridge (POST /rpc on $CLAUDE_BRIDGE_SOCKET, client-sdk/src/protocol/bridge.ts
// and tasks.ts), shared by /usr/local/bin/berth-task and the berth MCP server (/opt/berth/berth-mcp.mjs).
// Every call has a deadline and reads at most MAX_ANSWER bytes of the answer; what comes back is
// reported as a BridgeError with berth's string code (data.code) or, when berthd cannot be reached,
// code BRIDGE_UNREACHABLE and a sentence saying what to check.
import { request } from 'node:http';

export const DEFAULT_SOCKET = '/host/claude-bridge.sock';
/** A task with its notes is well under this; a bigger answer is not berthd's. */
const MAX_ANSWER = 4 * 1024 * 1024;
const DEFAULT_TIMEOUT_MS = 15_000;

export class BridgeError extends Error {
  /**
   * @param {string} code berth's error code (TASK_NOT_HELD ...), or BRIDGE_UNREACHABLE / BRIDGE_PROTOCOL
   * @param {number | null} rpcCode the JSON-RPC error's numeric code, when there was one
   * @param {string | null} hint berth's hint for the code
   */
  constructor(code, message, rpcCode = null, hint = null) {
    super(message);
    this.code = code;
    this.rpcCode = rpcCode;
    this.hint = hint;
  }
}

/** The bridge socket: $CLAUDE_BRIDGE_SOCKET, else where berth mounts it. */
export function bridgeSocket() {
  return process.env.CLAUDE_BRIDGE_SOCKET || DEFAULT_SOCKET;
}

/** Request deadline: $BERTH_TASK_TIMEOUT_SEC (1 to 600), else 15 s. */
export function requestTimeoutMs() {
  const sec = Number(process.env.BERTH_TASK_TIMEOUT_SEC);
  return Number.isFinite(sec) && sec >= 1 && sec <= 600 ? sec * 1000 : DEFAULT_TIMEOUT_MS;
}

/**
 * Text from berthd or from a task, made safe to print on a terminal or hand to a model: control
 * characters (C0 but newline and tab, DEL, C1), line and paragraph separators and bidi overrides
 * become \u escapes; at most `max` characters.
 */
export function escapeText(s, max = 4000) {
  const text = String(s);
  const cut = text.length > max ? `${text.slice(0, max)}…` : text;
  return cut.replace(/[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g, hex);
}

/** JSON whose strings carry no raw terminal controls either (JSON.stringify leaves DEL, C1 and bidi as they are). */
export function safeJson(value) {
  return JSON.stringify(value, null, 2).replace(/[\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g, hex);
}

function hex(c) {
  return `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`;
}

const CODE = /^[A-Z][A-Z0-9_]{0,63}$/;

function unreachable(socketPath, err) {
  const fix = 'is berthd running? `berth status` on the host; the bridge comes back when berthd restarts, no container restart needed';
  const why =
    err.code === 'ENOENT'
      ? `the bridge socket ${socketPath} does not exist (${process.env.CLAUDE_BRIDGE_SOCKET ? 'berthd makes it when it starts the session' : 'CLAUDE_BRIDGE_SOCKET is not set: is this a berth session?'})`
      : err.code === 'ECONNREFUSED'
        ? `berthd is not answering on ${socketPath}`
        : err.code === 'ETIMEDOUT'
          ? `berthd did not answer on ${socketPath} within ${Math.round(err.timeoutMs / 1000)} s`
          : `cannot reach ${socketPath} (${escapeText(err.code ?? err.message, 200)})`;
  return new BridgeError('BRIDGE_UNREACHABLE', `${why}: ${fix}`);
}

/** POSTs `body` to /rpc; resolves with the HTTP status and up to MAX_ANSWER bytes of the answer. */
function post(socketPath, body, timeoutMs) {
  return new Promise((resolve, reject) => {
    let settled = false;
    const finish = (fn, v) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      fn(v);
    };
    const req = request(
      { socketPath, path: '/rpc', method: 'POST', headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } },
      (res) => {
        const chunks = [];
        let size = 0;
        res.on('data', (c) => {
          size += c.length;
          if (size > MAX_ANSWER) {
            req.destroy();
            finish(reject, new BridgeError('BRIDGE_PROTOCOL', `the bridge answered with more than ${MAX_ANSWER} bytes`));
          } else chunks.push(c);
        });
        res.on('end', () => finish(resolve, { status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', (err) => finish(reject, unreachable(socketPath, err)));
      },
    );
    // One deadline for the whole exchange, not per socket read: a bridge that trickles bytes still ends.
    const timer = setTimeout(() => {
      req.destroy();
      finish(reject, unreachable(socketPath, { code: 'ETIMEDOUT', timeoutMs }));
    }, timeoutMs);
    req.on('error', (err) => finish(reject, unreachable(socketPath, err)));
    req.end(body);
  });
}

/**
 * Calls `method` on the bridge; resolves with its result, rejects with a BridgeError (berth's code
 * from the answer's data.code, its numeric JSON-RPC code, its message and hint, all as sent: escape
 * them before printing).
 */
export async function callBridge(method, params, { socketPath = bridgeSocket(), timeoutMs = requestTimeoutMs() } = {}) {
  const body = JSON.stringify({ jsonrpc: '2.0', id: 1, method, params });
  const { status, text } = await post(socketPath, body, timeoutMs);
  let answer;
  try {
    answer = JSON.parse(text);
  } catch {
    throw new BridgeError('BRIDGE_PROTOCOL', `the bridge answered HTTP ${status} with a body that is not JSON`);
  }
  if (!answer || typeof answer !== 'object') throw new BridgeError('BRIDGE_PROTOCOL', `the bridge answered HTTP ${status} with ${typeof answer}`);
  if (status !== 200) {
    // The bridge's own refusals (oversized request, session gone) come in the Messages API's error shape.
    const code = typeof answer.berth?.code === 'string' && CODE.test(answer.berth.code) ? answer.berth.code : 'BRIDGE_PROTOCOL';
    // Its message already ends with the hint.
    throw new BridgeError(code, typeof answer.error?.message === 'string' ? answer.error.message : `HTTP ${status}`);
  }
  if (answer.error && typeof answer.error === 'object') {
    const e = answer.error;
    const rpcCode = Number.isInteger(e.code) ? e.code : null;
    const data = e.data && typeof e.data === 'object' ? e.data : {};
    const code =
      typeof data.code === 'string' && CODE.test(data.code)
        ? data.code
        : rpcCode === -32602
          ? 'INVALID_PARAMS'
          : rpcCode === -32601
            ? 'METHOD_NOT_FOUND'
            : 'RPC_ERROR';
    throw new BridgeError(code, typeof e.message === 'string' ? e.message : 'error', rpcCode, typeof data.hint === 'string' ? data.hint : null);
  }
  if (!('result' in answer)) throw new BridgeError('BRIDGE_PROTOCOL', 'the bridge answered with neither a result nor an error');
  return answer.result;
}
