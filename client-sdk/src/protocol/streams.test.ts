import { describe, expect, it } from 'vitest';
import { BerthError, httpStatusOf, errorRegistry } from './errors.js';
import { fromWireError, streamRoutes, toWireError } from './streams.js';

describe('errors on the wire', () => {
  it('one shape for every route and stream, and back again without loss', () => {
    const e = new BerthError('SESSION_NOT_FOUND', 'no session x', { details: { id: 'x' } });
    const wire = toWireError(e);
    expect(wire).toEqual({ message: 'no session x', code: 'SESSION_NOT_FOUND', hint: errorRegistry.SESSION_NOT_FOUND.hint, details: { id: 'x' } });
    const back = fromWireError(JSON.parse(JSON.stringify(wire)), 'fallback');
    expect(back).toBeInstanceOf(BerthError);
    expect([back.code, back.message, back.hint, back.details]).toEqual([e.code, e.message, e.hint, e.details]);
  });

  it('what is not a BerthError goes out as INTERNAL_ERROR; an unknown code comes back as one', () => {
    expect(toWireError(new Error('boom'))).toMatchObject({ code: 'INTERNAL_ERROR', message: 'boom' });
    expect(fromWireError({ code: 'NOT_A_CODE' as never, message: 'm' }, 'f').code).toBe('INTERNAL_ERROR');
    expect(fromWireError(undefined, 'HTTP 502').message).toBe('HTTP 502');
  });

  it('HTTP statuses come from the registry: not found 404, bad input 400, engine away 503, the rest 409', () => {
    expect(httpStatusOf('SESSION_NOT_FOUND')).toBe(404);
    expect(httpStatusOf('INVALID_PARAMS')).toBe(400);
    expect(httpStatusOf('PARSE_ERROR')).toBe(400);
    expect(httpStatusOf('ENGINE_UNAVAILABLE')).toBe(503);
    expect(httpStatusOf('INTERNAL_ERROR')).toBe(500);
    expect(httpStatusOf('MERGE_CONFLICT')).toBe(409);
  });

  it('declares every stream with its method and path', () => {
    expect(Object.entries(streamRoutes).map(([k, v]) => `${k} ${v.method} ${v.path}`)).toEqual([
      'events GET /events',
      'sessions.logs GET /sessions/:id/logs',
      'sessions.exec GET /sessions/:id/exec',
      'images.build POST /images/build',
      'images.buildDefaults POST /images/build-defaults',
    ]);
  });
});
