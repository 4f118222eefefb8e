import {
  JSONRPCErrorException,
  JSONRPCServer,
  createJSONRPCErrorResponse,
  type JSONRPCErrorResponse,
  type JSONRPCID,
  type JSONRPCRequest,
  type JSONRPCResponse,
} from 'json-rpc-2.0';
import {
  BerthError,
  MAX_JSON_DEPTH,
  positionalParams,
  type ErrorCode,
  type MethodName,
  type ParamsOf,
  type ResultOf,
  type Streams,
} from '@berth/client-sdk/protocol';
import type { Logger } from '../log.js';
import type { JsonText } from '../shared/json-text.js';
import { paramSchemas, streamParamSchemas } from './schemas.js';

/** A handler's result, or the same already written as JSON text (see JsonText). */
type Answer<M extends MethodName> = ResultOf<M> | JsonText<ResultOf<M>>;
export type Handlers = { [M in MethodName]: (params: ParamsOf<M>) => Answer<M> | Promise<Answer<M>> };

export interface RpcReply {
  /** null: the request held only notifications, so no body is sent (HTTP 204). */
  body: JSONRPCResponse | JSONRPCResponse[] | null;
}

const isId = (v: unknown): v is JSONRPCID => typeof v === 'string' || (typeof v === 'number' && Number.isFinite(v)) || v === null;

function errorResponse(id: JSONRPCID, code: ErrorCode, message: string, details?: Record<string, unknown>): JSONRPCErrorResponse {
  const err = new BerthError(code, message, details ? { details } : {});
  return createJSONRPCErrorResponse(id, err.rpcCode, err.message, err.toData());
}

/**
 * Deepest bracket nesting of a JSON text, counted without parsing (strings skipped), so a hostile
 * body cannot make any later recursive walk blow the stack.
 */
export function jsonDepth(text: string): number {
  let depth = 0;
  let max = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 92 /* \ */) i++;
      else if (c === 34 /* " */) inString = false;
    } else if (c === 34) inString = true;
    else if (c === 91 /* [ */ || c === 123 /* { */) {
      if (++depth > max) max = depth;
    } else if (c === 93 || c === 125) depth--;
  }
  return max;
}

/**
 * JSON-RPC 2.0 exactly as the specification says: single calls and batches, notifications (no
 * response), params by position or by name, the reserved error codes, `id` echoed. Built on
 * json-rpc-2.0's JSONRPCServer for dispatch; the envelope is checked here first because that
 * library accepts some malformed requests (non-string methods, invalid ids, scalar params).
 */
export class RpcDispatcher {
  private readonly server: JSONRPCServer;

  constructor(
    handlers: Handlers,
    private readonly log: Logger,
  ) {
    this.server = new JSONRPCServer({ errorListener: () => {} });
    this.server.mapErrorToJSONRPCErrorResponse = (id, error) => this.mapError(id, error);
    this.server.handleMethodNotFound = ((request: JSONRPCRequest) => {
      throw new BerthError('METHOD_NOT_FOUND', `method ${JSON.stringify(request.method)} does not exist`, {
        details: { method: request.method },
      });
    }) as JSONRPCServer['handleMethodNotFound'];
    for (const method of Object.keys(handlers) as MethodName[]) {
      const handler = handlers[method] as (p: unknown) => unknown;
      const schema = paramSchemas[method];
      const order = positionalParams[method] as readonly string[];
      this.server.addMethod(method, (raw: unknown) => handler(parseParams(method, raw, order, schema)));
    }
  }

  /** Handles one HTTP body. Never throws. */
  async handle(text: string): Promise<RpcReply> {
    if (jsonDepth(text) > MAX_JSON_DEPTH) {
      return { body: errorResponse(null, 'NESTING_TOO_DEEP', `request nests deeper than ${MAX_JSON_DEPTH} levels`) };
    }
    let payload: unknown;
    try {
      payload = JSON.parse(text);
    } catch (err) {
      return { body: errorResponse(null, 'PARSE_ERROR', `Parse error: ${(err as Error).message}`) };
    }
    if (Array.isArray(payload)) {
      if (payload.length === 0) {
        return { body: errorResponse(null, 'INVALID_REQUEST', 'Invalid Request: empty batch') };
      }
      const replies = await Promise.all(payload.map((r) => this.single(r)));
      const body = replies.filter((r): r is JSONRPCResponse => r !== null);
      return { body: body.length ? body : null };
    }
    return { body: await this.single(payload) };
  }

  private async single(req: unknown): Promise<JSONRPCResponse | null> {
    const problem = envelopeProblem(req);
    if (problem) {
      const id = req && typeof req === 'object' && 'id' in req && isId((req as { id: unknown }).id) ? (req as { id: JSONRPCID }).id : null;
      return errorResponse(id, 'INVALID_REQUEST', `Invalid Request: ${problem}`);
    }
    const r = req as JSONRPCRequest;
    const started = process.hrtime.bigint();
    const res = await this.server.receive(r);
    if (this.log.isLevelEnabled('debug')) {
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      this.log.debug({ method: r.method, id: r.id, ms, error: res?.error?.data }, 'rpc');
    }
    return res;
  }

  private mapError(id: JSONRPCID, error: unknown): JSONRPCErrorResponse {
    if (error instanceof BerthError) {
      return createJSONRPCErrorResponse(id, error.rpcCode, error.message, error.toData());
    }
    if (error instanceof JSONRPCErrorException) {
      return createJSONRPCErrorResponse(id, error.code, error.message, error.data);
    }
    this.log.error({ err: error, id }, 'Unexpected error in RPC handler');
    return errorResponse(id, 'INTERNAL_ERROR', `Internal error: ${(error as Error)?.message ?? String(error)}`);
  }
}

function envelopeProblem(req: unknown): string | null {
  if (req === null || typeof req !== 'object' || Array.isArray(req)) return 'a request must be a JSON object';
  const r = req as Record<string, unknown>;
  if (r.jsonrpc !== '2.0') return 'the "jsonrpc" member must be exactly "2.0"';
  if (typeof r.method !== 'string') return 'the "method" member must be a string';
  if ('id' in r && !isId(r.id)) return 'the "id" member must be a string, a number or null';
  if ('params' in r && (r.params === null || typeof r.params !== 'object')) {
    return 'the "params" member must be an array or an object';
  }
  return null;
}

/** A method's params, named or positional, checked against its schema (INVALID_PARAMS otherwise). */
export function validParams<M extends MethodName>(method: M, raw: unknown): ParamsOf<M> {
  return parseParams(method, raw, positionalParams[method] as readonly string[], paramSchemas[method]) as ParamsOf<M>;
}

/** A stream's params (named only), checked against its schema like a method's. */
export function validStreamParams<S extends keyof typeof streamParamSchemas>(stream: S, raw: unknown): Streams[S]['params'] {
  return parseParams(stream as never, raw, [], streamParamSchemas[stream]) as Streams[S]['params'];
}

function parseParams(method: MethodName, raw: unknown, order: readonly string[], schema: { safeParse(v: unknown): { success: boolean; data?: unknown; error?: { issues: { path: PropertyKey[]; message: string }[] } } }): unknown {
  let named: unknown = raw ?? {};
  if (Array.isArray(raw)) {
    if (raw.length > order.length) {
      throw new BerthError('INVALID_PARAMS', `${method} takes at most ${order.length} positional params (${order.join(', ') || 'none'}), got ${raw.length}`, {
        details: { method, expected: order },
      });
    }
    const obj: Record<string, unknown> = {};
    raw.forEach((v, i) => {
      if (v !== undefined && v !== null) obj[order[i]!] = v;
    });
    named = obj;
  }
  const result = schema.safeParse(named);
  if (!result.success) {
    const issues = result.error!.issues.map((i) => ({ path: i.path.map(String).join('.'), message: i.message }));
    const first = issues[0]!;
    throw new BerthError('INVALID_PARAMS', `invalid params for ${method}: ${first.path ? `${first.path}: ` : ''}${first.message}`, {
      details: { method, issues },
    });
  }
  return result.data;
}
