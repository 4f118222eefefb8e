import { z } from 'zod';
import type { MethodName, ParamsOf } from '@berth/client-sdk/protocol';
import { cpuSchema, memorySchema, pidsSchema } from '../config/index.js';

const none = z.object({}).strict();
const byName = z.object({ name: z.string() }).strict();
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const IMAGE_REF = /^[a-z0-9][a-z0-9._/:@-]{0,254}$/i;

const limits = z
  .object({
    memory: memorySchema.optional(),
    cpus: cpuSchema.pipe(z.number()).optional(),
    pids: pidsSchema.pipe(z.number()).optional(),
  })
  .strict();

/**
 * Runtime validation of every method's params; typed against the protocol so the two cannot drift.
 * Shape errors become INVALID_PARAMS; domain rules (name syntax, paths) are checked by the services.
 */
export const paramSchemas: { [M in MethodName]: z.ZodType<ParamsOf<M>> } = {
  'daemon.status': none,
  'projects.add': z.object({ name: z.string(), path: z.string().min(1) }).strict(),
  'projects.list': none,
  'projects.get': byName,
  'projects.remove': byName,
  'agents.define': z
    .object({
      name: z.string(),
      command: z.array(z.string().max(64 * 1024)).min(1, { message: 'command needs at least the program to run' }).max(1024),
      image: z.string().regex(IMAGE_REF, { message: 'an image reference, like claude-agent-base or repo/name:tag' }).nullable().optional(),
      env: z
        .record(z.string().regex(ENV_NAME, { message: 'environment variable names are letters, digits and _' }), z.string().max(64 * 1024))
        .optional(),
      role: z.string().max(200).nullable().optional(),
      readOnly: z.boolean().optional(),
      limits: limits.optional(),
    })
    .strict() as z.ZodType<ParamsOf<'agents.define'>>,
  'agents.list': none,
  'agents.get': byName,
  'agents.remove': byName,
};
