export * from './errors.js';
export * from './methods.js';
export * from './types.js';

/** Limits of the wire protocol, enforced by berthd. */
export const MAX_REQUEST_BYTES = 1024 * 1024;
export const MAX_JSON_DEPTH = 64;
export * from './streams.js';
export * from './bridge.js';
export * from './exec.js';
export * from './tasks.js';
export * from './maintenance.js';
export * from './schedules.js';
export * from './logs.js';
