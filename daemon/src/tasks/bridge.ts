import { z } from 'zod';
import { BerthError, type BridgeTaskMethods } from '@berth/client-sdk/protocol';
import type { SessionRecord } from '../store/sessions.js';
import type { TaskService } from './service.js';

const leaseSec = z.number({ message: 'seconds, from 10 to 86400' }).int().min(10).max(86_400).optional();
// Lengths past MAX_TASK_NOTE are TASK_TOO_LARGE from the service; the request itself is capped at 1 MiB.
const schemas: { [M in keyof BridgeTaskMethods]: z.ZodType<BridgeTaskMethods[M]['params']> } = {
  'tasks.claim': z.object({ leaseSec }).strict(),
  'tasks.heartbeat': z.object({ leaseSec }).strict(),
  'tasks.complete': z.object({ summary: z.string() }).strict(),
  'tasks.fail': z.object({ reason: z.string() }).strict(),
  'tasks.release': z.object({ reason: z.string().optional() }).strict(),
  'tasks.review': z.object({ decision: z.enum(['approve', 'changes'], { message: 'approve or changes' }), notes: z.string().optional() }).strict(),
};

/**
 * The task methods of an agent's bridge. The session is the socket's; nothing in the params names a
 * task or a session, so an agent reaches only what it holds (or, as a pool's reviewer, reviews).
 */
export function bridgeTasks(tasks: TaskService): { call(s: SessionRecord, method: string, params: Record<string, unknown>): unknown; touch(id: string): void } {
  return {
    touch: (id) => tasks.touch(id),
    call(s, method, raw) {
      if (!Object.hasOwn(schemas, method)) throw new BerthError('METHOD_NOT_FOUND', `method ${JSON.stringify(method.slice(0, 64))} is not served on the bridge`);
      const parsed = schemas[method as keyof BridgeTaskMethods].safeParse(raw);
      if (!parsed.success) {
        const issue = parsed.error.issues[0]!;
        throw new BerthError('INVALID_PARAMS', `Invalid params: ${issue.path.join('.') || 'params'}: ${issue.message}`);
      }
      // One of the shapes above, checked; each case reads only its own fields.
      const p = parsed.data as { leaseSec?: number; summary: string; reason: string; decision: 'approve' | 'changes'; notes?: string };
      switch (method as keyof BridgeTaskMethods) {
        case 'tasks.claim':
          return tasks.claim(s, p.leaseSec);
        case 'tasks.heartbeat':
          return tasks.heartbeat(s, p.leaseSec);
        case 'tasks.complete':
          return tasks.complete(s, p.summary);
        case 'tasks.fail':
          return tasks.fail(s, p.reason);
        case 'tasks.release':
          return tasks.release(s, p.reason);
        case 'tasks.review':
          return tasks.review(s, p.decision, p.notes);
      }
    },
  };
}
