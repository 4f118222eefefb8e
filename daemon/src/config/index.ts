import { isAbsolute } from 'node:path';
import { z } from 'zod';
import { validate as validCron } from 'node-cron';
import { BerthError, MAINTENANCE_JOBS, notificationKinds, type ConfigSummary } from '@berth/client-sdk/protocol';
import { configKeys, configLayers, type ConfigKey, type Layers, type LoadOptions } from './layers.js';
import { SOCKET_GROUP_RE, SOCKET_MODES } from './socket-access.js';

export { MAX_CONFIG_FILE, SHIPPED_IMAGES_DIR, configKeys, readSmallFile, type ConfigKey, type Layers, type LoadOptions } from './layers.js';
export { socketAccess, type SocketAccess } from './socket-access.js';

const MEMORY_RE = /^(\d+(?:\.\d+)?)([bkmg])?$/i;
/** An image reference as berth accepts one anywhere (config, RPC params): name, registry path, tag, digest. */
export const IMAGE_REF = /^[a-z0-9][a-z0-9._/:@-]{0,254}$/i;

/** `512m`, `4g`, `1073741824` → bytes, as the docker CLI reads `--memory`. */
export function parseMemory(value: string): number | null {
  const m = MEMORY_RE.exec(value.trim());
  if (!m) return null;
  const n = Number(m[1]);
  const unit = (m[2] ?? 'b').toLowerCase();
  const mult = { b: 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[unit as 'b' | 'k' | 'm' | 'g'];
  const bytes = Math.floor(n * mult);
  return bytes > 0 ? bytes : null;
}

export const memorySchema = z
  .string()
  .refine((v) => parseMemory(v) !== null && parseMemory(v)! >= 6 * 1024 * 1024, {
    message: 'a memory size of at least 6m, like 512m or 4g',
  });
export const cpuSchema = z.coerce
  .number({ message: 'a number of CPUs, like 0.5 or 2' })
  .positive({ message: 'a number of CPUs greater than 0, like 0.5 or 2' })
  .max(1024, { message: 'at most 1024 CPUs' });
export const pidsSchema = z.coerce
  .number({ message: 'a whole number of processes, like 512' })
  .int({ message: 'a whole number of processes, like 512' })
  .min(16, { message: 'at least 16 processes' });

/** A byte size (`64k`, `16m`, `4g` or plain bytes) of at least `min`. */
const bytesSchema = (min: number, minText: string, example: string) =>
  z.preprocess(
    (v) => (typeof v === 'number' ? String(v) : v),
    z
      .string()
      .refine((v) => parseMemory(v) !== null && parseMemory(v)! >= min, { message: `a size of at least ${minText}, like ${example}` })
      .transform((v) => parseMemory(v)!),
  );

const absolutePath = (what: string) =>
  z.string().min(1).refine((p) => isAbsolute(p), { message: `an absolute path (${what})` });

const logLevels = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

const WEBHOOKS_EXPECTED = `a list of webhooks, each {url: http(s) URL, events?: [${notificationKinds.join(', ')}]}`;

/** JSON text (from the environment, or the file's list as layers.ts passes it on) → the list; null → none. */
const webhooksSchema = z.preprocess(
  (v) => {
    if (v === null || v === undefined || v === '') return [];
    if (typeof v !== 'string') return v;
    try {
      return JSON.parse(v) as unknown;
    } catch {
      return v;
    }
  },
  z
    .array(
      z.strictObject(
        {
          url: z.url({ protocol: /^https?$/, message: 'each webhook url an http:// or https:// URL' }),
          events: z.array(z.enum(notificationKinds, { message: `each event one of: ${notificationKinds.join(', ')}` })).min(1).optional(),
        },
        { message: `${WEBHOOKS_EXPECTED}, and no other keys` },
      ),
      { message: WEBHOOKS_EXPECTED },
    )
    .max(32, { message: 'at most 32 webhooks' }),
);

const CRON_EXPECTED = `a mapping of job (${MAINTENANCE_JOBS.join(', ')}) to a cron expression, like {"backup": "17 3 * * *"}, or to "off"`;

/** Per-job schedules over the defaults (maintenance/jobs.ts); JSON text from the environment or the file. */
const maintenanceCronSchema = z.preprocess(
  (v) => {
    if (v === null || v === undefined || v === '') return {};
    if (typeof v !== 'string') return v;
    try {
      return JSON.parse(v) as unknown;
    } catch {
      return v;
    }
  },
  z.partialRecord(
    z.enum(MAINTENANCE_JOBS, { message: CRON_EXPECTED }),
    z.string().refine((c) => c === 'off' || validCron(c), { message: CRON_EXPECTED }),
    { message: CRON_EXPECTED },
  ),
);

const fileSchema = z
  .object({
    socket: absolutePath('the RPC socket'),
    // Resolved (group name to gid) by socketAccess() before berthd binds; here for the summary and strictness.
    socketGroup: z.string().regex(SOCKET_GROUP_RE, { message: 'a group name or numeric gid, like berth' }).nullable(),
    socketMode: z.enum(SOCKET_MODES, { message: `one of: ${SOCKET_MODES.join(', ')}` }).nullable(),
    agentMode: z.enum(['docker', 'local'], { message: 'one of: docker, local' }),
    agentDefaultImage: z.string().regex(IMAGE_REF, { message: 'an image reference, like claude-agent-base or repo/name:tag' }),
    agentMemoryLimit: memorySchema,
    agentCpuLimit: cpuSchema,
    agentPidsLimit: pidsSchema,
    agentDockerAccess: z.enum(['socket'], { message: 'unset, or "socket" (mounts the engine socket into agents)' }).nullable(),
    agentRuntime: z.string().regex(/^[A-Za-z0-9._-]+$/, { message: 'an OCI runtime name, like runc or sysbox-runc' }).nullable(),
    projectsRoot: absolutePath('the tree projects must live under'),
    dockerHost: z
      .string()
      .regex(/^(unix|tcp|npipe|ssh):\/\/.+/, { message: 'an engine address like unix:///var/run/docker.sock or tcp://host:2375' })
      .nullable(),
    logLevel: z.enum(logLevels, { message: `one of: ${logLevels.join(', ')}` }),
    resyncSec: z.coerce.number({ message: 'seconds, like 30' }).min(1, { message: 'at least 1 second' }).max(86400),
    orphanGraceSec: z.coerce.number({ message: 'seconds, like 60' }).min(0, { message: '0 or more seconds' }).max(86400),
    gitTimeoutSec: z.coerce.number({ message: 'seconds, like 120' }).min(5, { message: 'at least 5 seconds' }).max(3600, { message: 'at most 3600 seconds' }),
    imagesDir: absolutePath('the directory of image stacks, one <name>/Dockerfile each'),
    buildCaCerts: z.union([z.literal('none'), absolutePath('a PEM file or a directory of them')], {
      message: '"none", or the absolute path of a PEM file or a directory of them',
    }),
    modelUpstream: z
      .string()
      .regex(/^https?:\/\/[^\s/]+(\/[^\s]*)?$/, { message: 'an http(s) URL of the Messages API, like https://api.anthropic.com' }),
    modelCredential: z.string().regex(/^(auto|none|claude-login|secret:[A-Za-z0-9_.-]+)$/, {
      message: 'one of: claude-login (the host login of berthd\'s user), secret:NAME (from secrets.yaml), none, auto',
    }),
    modelMaxInflight: z.coerce.number({ message: 'a whole number, like 8' }).int().min(1, { message: 'at least 1' }).max(1024),
    agentStuckTimeoutMinutes: z.coerce.number({ message: 'minutes, like 10' }).min(0.1, { message: 'at least 0.1 minute' }).max(7 * 1440),
    activityCheckSec: z.coerce.number({ message: 'seconds, like 15' }).min(1, { message: 'at least 1 second' }).max(3600),
    maxRunning: z.union([z.literal('auto'), z.coerce.number().int().min(0).max(100_000)], {
      message: '"auto" (what the host holds at the default limits), a whole number of sessions, or 0 for no cap',
    }),
    notifyWebhooks: webhooksSchema,
    configWatch: z.enum(['true', 'false'], { message: 'true (reload config.yaml and secrets.yaml when they change) or false (only on SIGHUP or `berth config reload`)' }).transform((v) => v === 'true'),
    backupKeep: z.coerce.number({ message: 'a whole number of backups, like 7' }).int({ message: 'a whole number of backups, like 7' }).min(1, { message: 'at least 1 backup' }).max(1000),
    maintenanceCron: maintenanceCronSchema,
    logSegmentBytes: bytesSchema(64 * 1024, '64k', '16m'),
    logRetentionBytes: bytesSchema(64 * 1024, '64k', '256m'),
    logRetentionTotalBytes: bytesSchema(64 * 1024, '64k', '4g'),
    logRetentionDays: z.coerce.number({ message: 'days, like 14' }).min(0, { message: '0 or more days' }).max(36500),
    logEngineBytes: bytesSchema(2 * 1024 * 1024, '2m', '128m'),
  })
  .strict();

export type Config = z.infer<typeof fileSchema> & { home: string; configFile: string | null };

/** Reads, merges and validates. Throws BerthError CONFIG_INVALID naming key, value and what is accepted. */
export function loadConfig(opts: LoadOptions = {}): Config {
  return loadLayered(opts).config;
}

/** loadConfig, with the layers it was merged from (the reload tells a file edit from an environment value). */
export function loadLayered(opts: LoadOptions = {}): { config: Config; layers: Layers } {
  const layers = configLayers(opts);
  const { home: berthHome, configFile, raw, source } = layers;
  const parsed = fileSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const key = String(issue.path[0] ?? '');
    const envName = configKeys[key as ConfigKey] ?? key;
    const value = raw[key as ConfigKey];
    const from = source[key as ConfigKey] ?? 'default';
    throw new BerthError(
      'CONFIG_INVALID',
      `invalid ${envName} (${key}) = ${JSON.stringify(value)} from ${from}: expected ${issue.message}`,
      { details: { key, env: envName, value, source: from, expected: issue.message } },
    );
  }
  return { config: { ...parsed.data, home: berthHome, configFile }, layers };
}

export function summarize(config: Config): ConfigSummary {
  return {
    home: config.home,
    socket: config.socket,
    agentMode: config.agentMode,
    agentDefaultImage: config.agentDefaultImage,
    agentMemoryLimit: config.agentMemoryLimit,
    agentCpuLimit: config.agentCpuLimit,
    agentPidsLimit: config.agentPidsLimit,
    agentDockerAccess: config.agentDockerAccess,
    agentRuntime: config.agentRuntime,
    projectsRoot: config.projectsRoot,
    dockerHost: config.dockerHost,
    logLevel: config.logLevel,
    resyncSec: config.resyncSec,
    orphanGraceSec: config.orphanGraceSec,
    gitTimeoutSec: config.gitTimeoutSec,
    imagesDir: config.imagesDir,
    buildCaCerts: config.buildCaCerts,
  };
}
