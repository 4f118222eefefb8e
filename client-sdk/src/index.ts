export * from './protocol/index.js';
export { BerthClient, defaultSocketPath, SYSTEM_SOCKET, type ClientOptions } from './client.js';
export type { ExecStream } from './exec.js';
