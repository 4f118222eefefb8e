import { parentPort, workerData } from 'node:worker_threads';
import { BerthError } from '@berth/client-sdk/protocol';
import { verifyCopy } from './backup.js';

/** verifyCopy on a thread of its own: an integrity check reads the whole file (about 5 ms per MB). */
const { file } = workerData as { file: string };
try {
  parentPort!.postMessage({ ok: true, result: verifyCopy(file) });
} catch (err) {
  const e = err instanceof BerthError ? err : new BerthError('RESTORE_INVALID', (err as Error)?.message ?? String(err));
  parentPort!.postMessage({ ok: false, code: e.code, message: e.message, details: e.details ?? null });
}
