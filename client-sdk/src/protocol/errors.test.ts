import { describe, expect, it } from 'vitest';
import { BerthError, errorCodes, errorRegistry, isTerminal } from './errors.js';

describe('the error registry', () => {
  it('says which errors the reconciler does not retry: what the user must fix (image, runtime, secrets, project path, checkout, network conflict, the engine refusing the container)', () => {
    expect(errorCodes.filter(isTerminal).sort()).toEqual(
      [
        'CHECKOUT_FAILED',
        'CONTAINER_CREATE_FAILED',
        'CONTAINER_START_FAILED',
        'IMAGE_NOT_FOUND',
        'NETWORK_CONFLICT',
        'PROJECT_OBJECTS_LINKED',
        'PROJECT_PATH_CHANGED',
        'RUNTIME_NOT_FOUND',
        'SECRETS_FILE_INSECURE',
        'SECRET_NOT_FOUND',
      ].sort(),
    );
    // What passes with time is retried: the engine coming back, a network made meanwhile.
    expect(isTerminal('ENGINE_UNAVAILABLE')).toBe(false);
    expect(isTerminal('NETWORK_NOT_FOUND')).toBe(false);
  });

  it('has distinct numeric codes of its own (the spec\'s reserved ones are shared on purpose), and a BerthError carries its registry hint and code on the wire', () => {
    const rpc = errorCodes.map((c) => errorRegistry[c].rpc).filter((n) => n >= 1000);
    expect(new Set(rpc).size).toBe(rpc.length);
    const e = new BerthError('IMPORT_FAILED', 'x');
    expect(e.rpcCode).toBe(1417);
    expect(e.toData()).toEqual({ code: 'IMPORT_FAILED', hint: errorRegistry.IMPORT_FAILED.hint });
  });
});
