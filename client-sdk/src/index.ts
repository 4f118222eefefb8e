export * from './protocol/index.js';
export {
  BerthClient,
  defaultSocketPath,
  SYSTEM_SOCKET,
  type CallOptions,
  type ClientOptions,
  type ConnectionState,
  type SessionCondition,
} from './client.js';
export type { EventsOptions, StreamedEvent } from './events.js';
export type { ExecStream } from './exec.js';
export type { LogOptions } from './logs.js';
