// Plain JS: the integration tests and bench/bridge both use it.
import { createServer } from 'node:http';
/**
 * A stand-in for the Anthropic Messages API on loopback: POST /v1/messages (JSON, or SSE with
 * `stream: true`) and /v1/messages/count_tokens, each answer with fixed usage; a request that forces a
 * tool (structured output) gets a tool_use of it whose input fits its schema. It records what it
 * saw (paths, headers: the credential that reached it) and the most requests it had open at once.
 * Enough for the real Claude Code CLI (`ANTHROPIC_BASE_URL` pointed at it).
 */
/** The tool a request forces (`tool_choice: {type: 'tool', name}`: structured output, as the Vercel AI SDK asks for it). */
function forcedTool(body) {
  const name = body?.tool_choice?.type === 'tool' ? body.tool_choice.name : undefined;
  return name ? (body.tools ?? []).find((t) => t?.name === name) ?? null : null;
}

/** Whether the conversation already has a tool call in it (the stand-in asks once a conversation). */
function answersTool(body) {
  return (body?.messages ?? []).some((m) => Array.isArray(m?.content) && m.content.some((c) => c?.type === 'tool_result' || c?.type === 'tool_use'));
}

/** How many tool calls the assistant already made in the conversation. */
function toolCalls(body) {
  return (body?.messages ?? []).reduce((n, m) => n + (m?.role === 'assistant' && Array.isArray(m.content) ? m.content.filter((c) => c?.type === 'tool_use').length : 0), 0);
}

/** A value that fits a JSON schema: every property, strings from `text`. */
export function fill(schema, text) {
  if (!schema || typeof schema !== 'object') return null;
  if (Array.isArray(schema.anyOf ?? schema.oneOf)) return fill((schema.anyOf ?? schema.oneOf)[0], text);
  if (schema.enum) return schema.enum[0];
  const type = Array.isArray(schema.type) ? schema.type[0] : schema.type;
  switch (type) {
    case 'object':
      return Object.fromEntries(Object.entries(schema.properties ?? {}).map(([k, v]) => [k, fill(v, text)]));
    case 'array':
      return [];
    case 'string':
      return text;
    case 'number':
    case 'integer':
      return 1;
    case 'boolean':
      return true;
    default:
      return null;
  }
}

export class ModelUpstream {
  server;
  opts;
  seen = [];
  inFlight = 0;
  maxInFlight = 0;
  /** Distinct TCP connections the upstream was reached on. */
  connections = 0;
  constructor(server, opts) {
    this.server = server;
    this.opts = opts;
  }
  /** @param {{answer?: string, usage?: object, delayMs?: number, host?: string, record?: boolean, streamPauseMs?: number, toolUse?: {name: string, input: object}, toolSteps?: {name: string, input: object}[]}} o */
  static async start(o = {}) {
    const opts = {
      answer: o.answer ?? 'Hello from the stand-in.',
      usage: o.usage ?? { input_tokens: 11, output_tokens: 7, cache_read_input_tokens: 5, cache_creation_input_tokens: 3 },
      delayMs: o.delayMs ?? 0,
      record: o.record ?? true,
      /** Held after message_start in a stream (an answer the agent can hang up on midway). */
      streamPauseMs: o.streamPauseMs ?? 0,
      /** {name, input}: ask for this tool (the agent's turn then waits for its permission). */
      toolUse: o.toolUse ?? null,
      /** [{name, input}, ...]: a turn that calls these tools one after the other, then answers. */
      toolSteps: o.toolSteps ?? null,
      /** Keep each request's body in `seen` (what the agent sent the model). */
      keepBodies: o.keepBodies ?? false,
    };
    let self;
    const server = createServer((req, res) => void self.handle(req, res));
    server.on('connection', () => self.connections++);
    // A real API keeps idle connections open far longer than node's 5 s: on a busy machine a gap
    // between two calls must not count as the relay opening another connection.
    server.keepAliveTimeout = 120_000;
    self = new ModelUpstream(server, opts);
    await new Promise((r) => server.listen(0, o.host ?? '127.0.0.1', r));
    return self;
  }
  /**
   * `toolSteps`: a request offering the next tool of the list (after as many tool calls as the
   * conversation holds) gets a call of it. `toolUse`: a request offering that tool, not already
   * answering a tool call, gets a call of it.
   */
  askTool(body) {
    const steps = this.opts.toolSteps;
    if (steps) {
      const next = steps[toolCalls(body)];
      return next && (body.tools ?? []).some((t) => t?.name === next.name) ? { name: next.name, input: next.input } : null;
    }
    const want = this.opts.toolUse;
    if (!want || answersTool(body) || !(body.tools ?? []).some((t) => t?.name === want.name)) return null;
    return { name: want.name, input: want.input };
  }
  get port() {
    return this.server.address().port;
  }
  get url() {
    return `http://127.0.0.1:${this.port}`;
  }
  async handle(req, res) {
    const chunks = [];
    for await (const c of req) chunks.push(c);
    let body = {};
    try {
      body = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}');
    } catch {
      /* not JSON: answered below */
    }
    const path = (req.url ?? '/').split('?')[0];
    const rec = { path, headers: req.headers, model: body.model ?? null, stream: body.stream === true, at: Date.now(), tool: null, body: this.opts.keepBodies ? Buffer.concat(chunks).toString('utf8') : null };
    if (this.opts.record) this.seen.push(rec);
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    try {
      if (this.opts.delayMs) await new Promise((r) => setTimeout(r, this.opts.delayMs));
      const model = body.model ?? 'claude-sonnet-4-5';
      if (req.method === 'POST' && path === '/v1/messages/count_tokens') {
        return void res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ input_tokens: this.opts.usage.input_tokens }));
      }
      if (req.method !== 'POST' || path !== '/v1/messages') {
        return void res.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ type: 'error', error: { type: 'not_found_error', message: path } }));
      }
      const id = `msg_${Math.random().toString(36).slice(2)}`;
      const u = this.opts.usage;
      const tool = forcedTool(body) ?? this.askTool(body);
      rec.tool = tool?.name ?? null;
      if (!body.stream) {
        res.writeHead(200, { 'content-type': 'application/json', 'request-id': id });
        const content = tool ? [{ type: 'tool_use', id: `toolu_${id.slice(4)}`, name: tool.name, input: tool.input ?? fill(tool.input_schema, this.opts.answer) }] : [{ type: 'text', text: this.opts.answer }];
        return void res.end(JSON.stringify({
          id, type: 'message', role: 'assistant', model, stop_reason: tool ? 'tool_use' : 'end_turn', stop_sequence: null, content, usage: u,
        }));
      }
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', 'request-id': id });
      const send = (event, data) => res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
      send('message_start', {
        type: 'message_start',
        message: { id, type: 'message', role: 'assistant', model, content: [], stop_reason: null, stop_sequence: null, usage: { ...u, output_tokens: 1 } },
      });
      if (this.opts.streamPauseMs) await new Promise((r) => setTimeout(r, this.opts.streamPauseMs));
      if (res.destroyed) return;
      if (tool) {
        send('content_block_start', { type: 'content_block_start', index: 0, content_block: { type: 'tool_use', id: `toolu_${id.slice(4)}`, name: tool.name, input: {} } });
        send('content_block_delta', { type: 'content_block_delta', index: 0, delta: { type: 'input_json_delta', partial_json: JSON.stringify(tool.input ?? fill(tool.input_schema, this.opts.answer)) } });
      } else {
        send('content_block_start', { type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } });
        send('ping', { type: 'ping' });
        const words = this.opts.answer.split(/(?<= )/);
        for (const w of words)
          send('content_block_delta', { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: w } });
      }
      send('content_block_stop', { type: 'content_block_stop', index: 0 });
      send('message_delta', { type: 'message_delta', delta: { stop_reason: tool ? 'tool_use' : 'end_turn', stop_sequence: null }, usage: { output_tokens: u.output_tokens } });
      send('message_stop', { type: 'message_stop' });
      res.end();
    }
    finally {
      this.inFlight--;
    }
  }
  /** The message requests (not count_tokens) seen so far. */
  messages() {
    return this.seen.filter((s) => s.path === '/v1/messages');
  }
  async close() {
    this.server.closeAllConnections();
    await new Promise((r) => this.server.close(() => r()));
  }
  async [Symbol.asyncDispose]() {
    await this.close();
  }
}
