import { BerthError } from '@berth/client-sdk/protocol';

type EngineErr = Error & { statusCode?: number; code?: string; level?: string; json?: { message?: string } | string | null; reason?: string };

/** The engine's HTTP status for a failed call, or undefined when the engine did not answer. */
export const status = (err: unknown): number | undefined => (err as EngineErr).statusCode;

/** The engine's own words for a failed call (its JSON `message`), for people, never for branching. */
export function engineMessage(err: unknown): string {
  const e = err as EngineErr;
  const m = (typeof e.json === 'object' ? e.json?.message : undefined) ?? (typeof e.json === 'string' ? e.json : undefined) ?? e.message;
  return String(m).replace(/^\(HTTP code \d+\) [^-]*- /, '').trim();
}

const TRANSPORT_ERRNO = new Set(['ECONNREFUSED', 'ENOENT', 'EPIPE', 'ECONNRESET', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'EACCES']);

/**
 * Whether the engine could not be reached (ENGINE_UNAVAILABLE: transient, retried) rather than
 * answered with an error. Decided by what the failure carries, never its text: an HTTP status means
 * the engine answered; a socket errno (a request timeout ends as ECONNRESET), or an ssh2 transport
 * level for ssh:// engines, means it did not.
 */
export function isTransportError(err: unknown): boolean {
  const e = err as EngineErr;
  if (e.statusCode !== undefined) return false;
  return TRANSPORT_ERRNO.has(e.code ?? '') || (typeof e.level === 'string' && e.level.startsWith('client-'));
}

/** Rethrows a transport failure as ENGINE_UNAVAILABLE; anything else as it is. */
export function wrapTransport(err: unknown, host: string): never {
  if (err instanceof BerthError) throw err;
  if (isTransportError(err)) {
    throw new BerthError('ENGINE_UNAVAILABLE', `Docker engine at ${host} is unreachable: ${(err as Error).message}`, { cause: err });
  }
  throw err;
}
