import { z } from 'zod';
import { CONCURRENCY_POLICIES, TASK_STATES, type MethodName, type ParamsOf, type Streams } from '@berth/client-sdk/protocol';
import { IMAGE_REF, cpuSchema, memorySchema, pidsSchema } from '../config/index.js';
import { STACK_NAME } from '../images/stacks.js';

const none = z.object({}).strict();
const byName = z.object({ name: z.string() }).strict();
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const stackName = z.string().regex(STACK_NAME, { message: 'a stack name under images/, like node' });
const variant = z.enum(['prod', 'dev'], { message: 'prod or dev' });
const buildArgs = z
  .record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, { message: 'build arg names are letters, digits and _' }), z.string())
  .optional();

const network = z.enum(['bridge', 'internal', 'none'], { message: 'one of: bridge, internal, none' });
const budgetTokens = z
  .number({ message: 'a whole number of tokens, like 2000000' })
  .int({ message: 'a whole number of tokens' })
  .min(1, { message: 'at least 1 token (null: no budget)' })
  .max(Number.MAX_SAFE_INTEGER);
const restartPolicy = z.enum(['never', 'on-failure', 'always'], { message: 'one of: never, on-failure, always' });
const CAP = /^[A-Z_]{2,32}$/;
const sessionRef = z.string().min(1).max(128);
const env = z.record(
  z.string().regex(ENV_NAME, { message: 'environment variable names are letters, digits and _' }),
  z.string().max(64 * 1024),
);
const command = z.array(z.string().max(64 * 1024)).min(1, { message: 'command needs at least the program to run' }).max(1024);

const taskId = z.number({ message: 'a task number' }).int().min(1).max(Number.MAX_SAFE_INTEGER);
const taskIds = z.array(taskId).max(1000);
// Sizes past these are TASK_TOO_LARGE from the service (a clear code, not a shape error).
const taskTitle = z.string();
const taskBody = z.string();
const taskPriority = z.number().int().min(-1_000_000).max(1_000_000);
const taskLabels = z.array(z.string().min(1).max(100)).max(50);
const maxAttempts = z.number().int().min(1).max(100);
const parallel = z.number({ message: 'a number of sessions from 1 to 100' }).int().min(1).max(100);
const cron = z.string().max(200, { message: 'a cron expression of five fields' });
const tz = z.string().max(64, { message: 'an IANA time zone name, like Europe/Berlin' });
const concurrency = z.enum(CONCURRENCY_POLICIES, { message: CONCURRENCY_POLICIES.join(', ') });
const startingDeadlineSec = z.number({ message: 'seconds, from 1 to 86400' }).int().min(1, { message: 'at least 1 second' }).max(86_400, { message: 'at most a day (86400)' });

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
  'daemon.reloadConfig': none,
  'projects.add': z
    .object({
      name: z.string(),
      path: z.string().min(1).optional(),
      gitUrl: z
        .string()
        .min(1)
        .max(2048)
        .refine((u) => !u.startsWith('-') && !/^ext::/i.test(u), { message: 'a git URL (https://, ssh://, user@host:path or file://)' })
        .optional(),
      sshKeyPath: z.string().min(1).optional(),
      branch: z.string().regex(/^(?!-)[A-Za-z0-9._\/-]{1,200}$/, { message: 'a branch name' }).optional(),
      worktrees: z.enum(['always', 'when-shared'], { message: 'always or when-shared' }).optional(),
    })
    .strict()
    .refine((p) => (p.path === undefined) !== (p.gitUrl === undefined), { message: 'give exactly one of path or gitUrl' }),
  'projects.list': none,
  'projects.update': z
    .object({
      name: z.string(),
      network: network.nullable().optional(),
      worktrees: z.enum(['always', 'when-shared']).optional(),
      defaultImage: z.string().regex(IMAGE_REF, { message: 'an image reference, like claude-agent-node' }).nullable().optional(),
    })
    .strict(),
  'projects.get': byName,
  'projects.remove': byName,
  'agents.define': z
    .object({
      name: z.string(),
      command,
      image: z.string().regex(IMAGE_REF, { message: 'an image reference, like claude-agent-base or repo/name:tag' }).nullable().optional(),
      env: env.optional(),
      role: z.string().max(200).nullable().optional(),
      readOnly: z.boolean().optional(),
      limits: limits.optional(),
      restartPolicy: restartPolicy.optional(),
      network: network.nullable().optional(),
      readOnlyRootfs: z.boolean().optional(),
      capAdd: z.array(z.string().regex(CAP, { message: 'a capability name like NET_BIND_SERVICE' })).max(40).optional(),
      secrets: z
        .record(
          z.string().regex(ENV_NAME, { message: 'environment variable names are letters, digits and _' }),
          z.string().regex(/^[A-Za-z0-9._-]{1,128}$/, { message: 'a secret name from secrets.yaml' }),
        )
        .optional(),
      budgetTokens: budgetTokens.nullable().optional(),
      stuckAfterSec: z.number().int().min(5, { message: 'at least 5 seconds' }).max(7 * 86400).nullable().optional(),
      onStuck: z.enum(['restart', 'notify', 'none'], { message: 'one of: restart, notify, none' }).optional(),
    })
    .strict() as z.ZodType<ParamsOf<'agents.define'>>,
  'agents.list': none,
  'agents.get': byName,
  'agents.remove': byName,
  'sessions.start': z
    .object({
      project: z.string(),
      agent: z.string(),
      mode: z.enum(['write', 'read'], { message: 'write or read' }).optional(),
      name: z.string().optional(),
      command: command.optional(),
      env: env.optional(),
      limits: limits.optional(),
      restartPolicy: restartPolicy.optional(),
      budgetTokens: budgetTokens.nullable().optional(),
      priority: z.number().int().min(-1000).max(1000).optional(),
    })
    .strict() as z.ZodType<ParamsOf<'sessions.start'>>,
  'sessions.list': z
    .object({
      project: z.string().optional(),
      state: z.enum(['pending', 'creating', 'running', 'stopping', 'stopped', 'exited', 'failed', 'removed']).optional(),
      active: z.boolean().optional(),
      limit: z.number().int().min(1).max(1000).optional(),
      cursor: z.string().max(1024).optional(),
      removed: z.boolean().optional(),
    })
    .strict(),
  'sessions.get': z.object({ id: sessionRef }).strict(),
  'sessions.stop': z
    .object({
      id: sessionRef,
      timeoutSec: z.number().int().min(0).max(3600).optional(),
      graceful: z.boolean().optional(),
      withinSec: z.number().int().min(1).max(7 * 86400).optional(),
    })
    .strict(),
  'sessions.restart': z.object({ id: sessionRef }).strict(),
  'sessions.remove': z.object({ id: sessionRef, force: z.boolean().optional(), deleteBranch: z.boolean().optional(), stop: z.boolean().optional() }).strict(),
  'sessions.status': z.object({ id: sessionRef }).strict(),
  'sessions.diff': z.object({ id: sessionRef, stat: z.boolean().optional() }).strict(),
  'sessions.merge': z
    .object({ id: sessionRef, strategy: z.enum(['ff', 'merge', 'squash']).optional(), message: z.string().min(1).max(10_000).optional(), includeUncommitted: z.boolean().optional() })
    .strict(),
  'images.list': none,
  'images.remove': z.object({ name: z.string().regex(IMAGE_REF, { message: 'an image reference' }) }).strict(),
  'images.build': z
    .object({
      name: z.string().regex(IMAGE_REF, { message: 'an image name, like claude-agent-node or claude-agent-node:dev' }),
      dockerfile: z.string().min(1).optional(),
      stack: stackName.optional(),
      context: z.string().min(1).optional(),
      buildArgs,
      variant: variant.optional(),
      noCache: z.boolean().optional(),
    })
    .strict(),
  'images.buildDefaults': z
    .object({
      stacks: z.array(stackName).max(100).optional(),
      variants: z.array(variant).min(1).max(2).optional(),
      tag: z.string().regex(/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,120}$/, { message: 'an image tag, like latest or 2026-11' }).optional(),
      buildArgs,
      noCache: z.boolean().optional(),
    })
    .strict(),
  'sessions.logs': z
    .object({
      id: sessionRef,
      tail: z.number().int().min(0).optional(),
      // Read (and refused with LOG_FILTER_INVALID) by the log reader: times as `berth logs` takes them.
      since: z.string().max(100).optional(),
      until: z.string().max(100).optional(),
      grep: z.string().optional(),
    })
    .strict(),
  'sessions.usage': z.object({ id: sessionRef }).strict(),
  'sessions.requests': z.object({ id: sessionRef, limit: z.number().int().min(1).max(100_000).optional() }).strict(),
  'tasks.add': z
    .object({
      project: z.string(),
      title: taskTitle,
      body: taskBody.optional(),
      priority: taskPriority.optional(),
      labels: taskLabels.optional(),
      dependsOn: taskIds.optional(),
      maxAttempts: maxAttempts.optional(),
    })
    .strict(),
  'tasks.list': z
    .object({
      project: z.string().optional(),
      state: z.enum(TASK_STATES, { message: TASK_STATES.join(', ') }).optional(),
      limit: z.number().int().min(1).max(1000).optional(),
      cursor: z.string().max(64).optional(),
    })
    .strict(),
  'tasks.get': z.object({ id: taskId }).strict(),
  'tasks.update': z
    .object({
      id: taskId,
      title: taskTitle.optional(),
      body: taskBody.optional(),
      priority: taskPriority.optional(),
      labels: taskLabels.optional(),
      dependsOn: taskIds.optional(),
      maxAttempts: maxAttempts.optional(),
      reopen: z.boolean().optional(),
    })
    .strict(),
  'tasks.cancel': z.object({ id: taskId }).strict(),
  'tasks.remove': z.object({ id: taskId }).strict(),
  'tasks.import': z.object({ project: z.string(), format: z.enum(['yaml', 'json', 'csv'], { message: 'yaml, json or csv' }), text: z.string() }).strict(),
  'pools.create': z
    .object({
      project: z.string(),
      agent: z.string(),
      parallel: parallel,
      reviewer: z.string().optional(),
      autoMerge: z.boolean().optional(),
      untilEmpty: z.boolean().optional(),
      name: z.string().optional(),
    })
    .strict(),
  'pools.list': z.object({ project: z.string().optional() }).strict(),
  'pools.get': z.object({ id: z.string().min(1).max(128) }).strict(),
  'pools.scale': z.object({ id: z.string().min(1).max(128), parallel: parallel }).strict(),
  'pools.stop': z.object({ id: z.string().min(1).max(128), graceful: z.boolean().optional() }).strict(),
  'sessions.exec': z
    .object({ id: sessionRef, cmd: command, timeoutSec: z.number().int().min(1).max(3600).optional() })
    .strict(),
  'maintenance.list': none,
  'maintenance.run': z.object({ job: z.string().min(1).max(64) }).strict(),
  'maintenance.backup': z.object({ to: z.string().min(1).max(4096).optional() }).strict(),
  'schedules.add': z
    .object({
      name: z.string(),
      project: z.string(),
      agent: z.string(),
      cron,
      tz: tz.optional(),
      command: command.optional(),
      task: taskId.optional(),
      concurrency: concurrency.optional(),
      startingDeadlineSec: startingDeadlineSec.optional(),
      suspended: z.boolean().optional(),
    })
    .strict(),
  'schedules.list': z.object({ project: z.string().optional() }).strict(),
  'schedules.get': byName,
  'schedules.update': z
    .object({
      name: z.string(),
      cron: cron.optional(),
      tz: tz.nullable().optional(),
      agent: z.string().optional(),
      command: command.nullable().optional(),
      task: taskId.nullable().optional(),
      concurrency: concurrency.optional(),
      startingDeadlineSec: startingDeadlineSec.optional(),
      suspended: z.boolean().optional(),
    })
    .strict(),
  'schedules.remove': byName,
  'schedules.run': byName,
};

/** Params of the streams that take more than an id, checked like the methods' (INVALID_PARAMS). */
export const streamParamSchemas: { 'sessions.exec': z.ZodType<Streams['sessions.exec']['params']> } = {
  'sessions.exec': z
    .object({
      id: sessionRef,
      cmd: command,
      tty: z.boolean().optional(),
      stdin: z.boolean().optional(),
      env: env.optional(),
      workdir: z.string().min(1).max(4096).refine((v) => v.startsWith('/'), { message: 'an absolute path inside the session' }).optional(),
      cols: z.number().int().min(1).max(10_000).optional(),
      rows: z.number().int().min(1).max(10_000).optional(),
      timeoutSec: z.number().int().min(1).max(7 * 24 * 3600).optional(),
    })
    .strict(),
};
