import { Agent as HttpAgent, request as httpRequest, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { BerthError, httpStatusOf } from '@berth/client-sdk/protocol';
import type { Logger } from '../log.js';
import type { CredentialSource } from './credential.js';
import { FairQueue } from './fair-queue.js';
import { UsageMeter, noTokens, type Tokens } from './usage.js';

/** Headers of the agent's request that go upstream; everything else (its credential first) is dropped. */
const FORWARD = /^(anthropic-(?!dangerous)[a-z0-9-]+|x-stainless-[a-z0-9-]+|content-type|accept|user-agent|x-app|x-claude-code-session-id)$/;
/** Headers of the upstream's answer that are not passed back (hop-by-hop, or set by our server). */
const HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'proxy-connection', 'upgrade', 'trailer', 'te', 'set-cookie']);

export interface RelayResult {
  status: number;
  model: string | null;
  tokens: Tokens;
  queuedMs: number;
  /** A berth error code when berth, not the upstream, decided the answer. */
  error: string | null;
}

/** The Messages API error body Claude Code shows; berth's code and hint ride along. */
export function apiErrorBody(err: BerthError): string {
  const status = httpStatusOf(err.code);
  const type = status === 401 ? 'authentication_error' : status === 403 ? 'permission_error' : status === 413 ? 'request_too_large' : 'api_error';
  return JSON.stringify({ type: 'error', error: { type, message: `berth: ${err.message}. ${err.hint ?? ''}`.trim() }, berth: err.toData() });
}

export function sendApiError(res: ServerResponse, err: BerthError): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  res.writeHead(httpStatusOf(err.code), { 'content-type': 'application/json' });
  res.end(apiErrorBody(err));
}

/**
 * The model side of every bridge: one keep-alive connection pool to the upstream for the whole
 * host, at most `maxInflight` requests out at once (FairQueue, fair across sessions), the
 * credential added here and only here, answers streamed back chunk by chunk (SSE is never
 * buffered) while their usage is read on the way.
 */
export class ModelRelay {
  readonly queue: FairQueue;
  private base: URL;
  private agent: HttpAgent;

  constructor(
    upstream: string,
    maxInflight: number,
    private readonly credential: CredentialSource,
    private readonly log: Logger,
  ) {
    this.base = new URL(upstream);
    this.queue = new FairQueue(maxInflight);
    this.agent = ModelRelay.pool(this.base, maxInflight);
  }

  private static pool(base: URL, maxInflight: number): HttpAgent {
    const Agent = base.protocol === 'https:' ? HttpsAgent : HttpAgent;
    return new Agent({ keepAlive: true, maxSockets: maxInflight, maxFreeSockets: maxInflight, scheduling: 'lifo' });
  }

  /**
   * Config `modelUpstream` / `modelMaxInflight` changed live: requests that get their slot from now
   * on go to the new upstream through a new connection pool; those in flight finish on the old one,
   * whose idle connections are closed once they are done.
   */
  configure(upstream: string, maxInflight: number): void {
    const old = this.agent;
    this.base = new URL(upstream);
    this.agent = ModelRelay.pool(this.base, maxInflight);
    this.queue.setLimit(maxInflight);
    // destroy() would cut the requests in flight; free sockets are closed as they come back.
    old.on('free', (socket) => socket.destroy());
    for (const list of Object.values(old.freeSockets)) for (const s of list ?? []) s.destroy();
  }

  /** Relays one request whose body was read already. Never throws: failures are answered to the agent. */
  /**
   * `admit` runs once the request has its slot, right before it goes out (a budget is checked
   * there, not only on arrival: requests queued while the session was under budget would
   * otherwise all go out). A BerthError it throws is the answer. `settle` runs when the answer is
   * over, before the slot is given to the next request, so that one's `admit` sees this one's usage.
   */
  async relay(
    session: string,
    pathAndQuery: string,
    req: IncomingMessage,
    res: ServerResponse,
    body: Buffer,
    hooks: { admit?: () => void; settle?: (r: RelayResult) => void } = {},
  ): Promise<RelayResult> {
    const result: RelayResult = { status: 0, model: null, tokens: noTokens(), queuedMs: 0, error: null };
    const gone = new AbortController();
    const onClose = () => {
      if (!res.writableFinished) gone.abort(new Error('the agent closed the connection'));
    };
    res.on('close', onClose);
    let release: (() => void) | null = null;
    let meter: UsageMeter | null = null;
    try {
      const cred = this.credential.get();
      const queuedAt = performance.now();
      release = await this.queue.acquire(session, gone.signal);
      result.queuedMs = Math.round(performance.now() - queuedAt);
      hooks.admit?.();
      const headers = outgoingHeaders(req.headers, cred.headers, cred.betas, body.length);
      const url = new URL(this.base.pathname.replace(/\/$/, '') + pathAndQuery, this.base);
      await new Promise<void>((resolve) => {
        const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
        const up = send(url, { method: 'POST', headers, agent: this.agent, signal: gone.signal }, (answer) => {
          result.status = answer.statusCode ?? 502;
          meter = new UsageMeter(answer.headers['content-type']);
          const back: Record<string, string | string[]> = {};
          for (const [k, v] of Object.entries(answer.headers)) if (v !== undefined && !HOP.has(k)) back[k] = v;
          res.writeHead(result.status, back);
          res.flushHeaders();
          res.on('drain', () => answer.resume());
          answer.on('data', (chunk: Buffer) => {
            meter!.push(chunk);
            if (!res.write(chunk)) answer.pause();
          });
          answer.on('end', () => {
            res.end();
            resolve();
          });
          answer.on('error', () => {
            result.error ??= 'MODEL_UPSTREAM_FAILED';
            res.destroy();
            resolve();
          });
        });
        up.on('error', (err) => {
          if (gone.signal.aborted) {
            result.error = 'CLIENT_GONE';
            result.status ||= 499;
          } else {
            result.status ||= 502;
            result.error = 'MODEL_UPSTREAM_FAILED';
            this.log.warn({ session, err: err.message }, 'Model upstream failed');
            sendApiError(res, new BerthError('MODEL_UPSTREAM_FAILED', `the model upstream ${this.base.origin} failed: ${err.message}`));
          }
          resolve();
        });
        up.end(body);
      });
    } catch (err) {
      if (gone.signal.aborted) {
        result.status = 499;
        result.error = 'CLIENT_GONE';
      } else {
        const e = err instanceof BerthError ? err : new BerthError('INTERNAL_ERROR', (err as Error).message);
        result.status = httpStatusOf(e.code);
        result.error = e.code;
        sendApiError(res, e);
      }
    } finally {
      res.off('close', onClose);
      // Whatever the upstream reported counts, also when the agent hung up before the end of the
      // answer (or it would have a way to use the model uncounted).
      const m = meter as UsageMeter | null; // assigned in the answer's callback
      if (m) {
        result.tokens = m.end();
        result.model = m.model;
      }
      try {
        hooks.settle?.(result);
      } finally {
        release?.();
      }
    }
    return result;
  }

  close(): void {
    this.agent.destroy();
  }
}

function outgoingHeaders(incoming: IncomingHttpHeaders, credential: Record<string, string>, betas: string[], length: number): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(incoming)) {
    if (v === undefined || !FORWARD.test(k)) continue;
    out[k] = Array.isArray(v) ? v.join(', ') : v;
  }
  if (betas.length) {
    const have = (out['anthropic-beta'] ?? '').split(',').map((b) => b.trim()).filter(Boolean);
    out['anthropic-beta'] = [...new Set([...have, ...betas])].join(',');
  }
  // The answer's usage is read on the way: ask for it uncompressed.
  out['accept-encoding'] = 'identity';
  out['content-length'] = String(length);
  return { ...out, ...credential };
}
