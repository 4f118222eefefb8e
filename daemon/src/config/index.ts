import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { BerthError, type ConfigSummary } from '@berth/client-sdk/protocol';

/**
 * Configuration: defaults < config file (`$BERTH_HOME/config.yaml` or `--config FILE`) < environment
 * < command-line flags. Every key has one file name (camelCase) and one environment name; the
 * environment names are the ones users of the earlier platform already know.
 */
export const configKeys = {
  socket: 'BERTH_SOCKET',
  agentMode: 'AGENT_MODE',
  agentDefaultImage: 'AGENT_DEFAULT_IMAGE',
  agentMemoryLimit: 'AGENT_MEMORY_LIMIT',
  agentCpuLimit: 'AGENT_CPU_LIMIT',
  agentPidsLimit: 'AGENT_PIDS_LIMIT',
  agentDockerAccess: 'AGENT_DOCKER_ACCESS',
  agentRuntime: 'AGENT_RUNTIME',
  projectsRoot: 'PROJECTS_ROOT',
  dockerHost: 'DOCKER_HOST',
  logLevel: 'BERTH_LOG_LEVEL',
  resyncSec: 'BERTH_RESYNC_SEC',
  orphanGraceSec: 'BERTH_ORPHAN_GRACE_SEC',
  imagesDir: 'BERTH_IMAGES_DIR',
  buildCaCerts: 'BERTH_BUILD_CA_CERTS',
} as const;

/** images/ of this checkout or package (daemon/{src,dist}/config/ → images/). */
export const SHIPPED_IMAGES_DIR = fileURLToPath(new URL('../../../images', import.meta.url));

export type ConfigKey = keyof typeof configKeys;

const MEMORY_RE = /^(\d+(?:\.\d+)?)([bkmg])?$/i;
const IMAGE_RE = /^[a-z0-9][a-z0-9._/:@-]*$/i;

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

const absolutePath = (what: string) =>
  z.string().min(1).refine((p) => isAbsolute(p), { message: `an absolute path (${what})` });

const logLevels = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

const fileSchema = z
  .object({
    socket: absolutePath('the RPC socket'),
    agentMode: z.enum(['docker', 'local'], { message: 'one of: docker, local' }),
    agentDefaultImage: z.string().regex(IMAGE_RE, { message: 'an image reference, like claude-agent-base or repo/name:tag' }),
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
    imagesDir: absolutePath('the directory of image stacks, one <name>/Dockerfile each'),
    buildCaCerts: z.union([z.literal('none'), absolutePath('a PEM file or a directory of them')], {
      message: '"none", or the absolute path of a PEM file or a directory of them',
    }),
  })
  .strict();

export type Config = z.infer<typeof fileSchema> & { home: string; configFile: string | null };

export interface LoadOptions {
  env?: NodeJS.ProcessEnv;
  /** `--config FILE`; when absent, `$BERTH_HOME/config.yaml` is read if it exists. */
  configFile?: string;
  /** Command-line flags; they beat everything else. */
  overrides?: Partial<Record<ConfigKey, string>>;
}

function expandHome(p: string, home: string): string {
  if (p === '~') return home;
  if (p.startsWith('~/')) return join(home, p.slice(2));
  return p;
}

/** Reads, merges and validates. Throws BerthError CONFIG_INVALID naming key, value and what is accepted. */
export function loadConfig(opts: LoadOptions = {}): Config {
  const env = opts.env ?? process.env;
  const userHome = env.HOME || homedir();
  const berthHome = resolve(expandHome(env.BERTH_HOME || join(userHome, '.berth'), userHome));

  const raw: Record<string, unknown> = {
    socket: join(berthHome, 'berth.sock'),
    agentMode: 'docker',
    agentDefaultImage: 'claude-agent-base',
    agentMemoryLimit: '4g',
    agentCpuLimit: '2',
    agentPidsLimit: '512',
    agentDockerAccess: null,
    agentRuntime: null,
    projectsRoot: join(userHome, 'projects'),
    dockerHost: null,
    logLevel: 'info',
    resyncSec: '30',
    orphanGraceSec: '60',
    imagesDir: SHIPPED_IMAGES_DIR,
    buildCaCerts: '/usr/local/share/ca-certificates',
  };
  const source: Record<string, string> = {};

  let configFile: string | null = null;
  const explicit = opts.configFile !== undefined;
  const candidate = explicit ? resolve(opts.configFile!) : join(berthHome, 'config.yaml');
  let text: string | null = null;
  try {
    text = readFileSync(candidate, 'utf8');
    configFile = candidate;
  } catch (err) {
    if (explicit || (err as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new BerthError('CONFIG_INVALID', `cannot read config file ${candidate}: ${(err as Error).message}`, {
        details: { file: candidate },
      });
    }
  }
  if (text !== null) {
    let doc: unknown;
    try {
      doc = parseYaml(text);
    } catch (err) {
      throw new BerthError('CONFIG_INVALID', `config file ${candidate} is not valid YAML: ${(err as Error).message}`, {
        details: { file: candidate },
      });
    }
    if (doc !== null && doc !== undefined) {
      if (typeof doc !== 'object' || Array.isArray(doc)) {
        throw new BerthError('CONFIG_INVALID', `config file ${candidate} must be a mapping of keys to values`, {
          details: { file: candidate },
        });
      }
      for (const [k, v] of Object.entries(doc as Record<string, unknown>)) {
        if (!(k in configKeys)) {
          throw new BerthError(
            'CONFIG_INVALID',
            `unknown key "${k}" in ${candidate}; accepted keys: ${Object.keys(configKeys).join(', ')}`,
            { details: { file: candidate, key: k } },
          );
        }
        raw[k] = v === null || v === undefined ? null : typeof v === 'string' ? v : String(v);
        source[k] = `${candidate}: ${k}`;
      }
    }
  }

  for (const [key, envName] of Object.entries(configKeys) as [ConfigKey, string][]) {
    const v = env[envName];
    if (v !== undefined && v !== '') {
      raw[key] = v;
      source[key] = envName;
    }
  }
  for (const [key, v] of Object.entries(opts.overrides ?? {}) as [ConfigKey, string | undefined][]) {
    if (v !== undefined) {
      raw[key] = v;
      source[key] = `--${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
    }
  }
  for (const key of ['socket', 'projectsRoot', 'imagesDir', 'buildCaCerts'] as const) {
    if (typeof raw[key] === 'string') raw[key] = expandHome(raw[key] as string, userHome);
  }

  const parsed = fileSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const key = String(issue.path[0] ?? '');
    const envName = configKeys[key as ConfigKey] ?? key;
    const value = raw[key];
    const from = source[key] ?? 'default';
    throw new BerthError(
      'CONFIG_INVALID',
      `invalid ${envName} (${key}) = ${JSON.stringify(value)} from ${from}: expected ${issue.message}`,
      { details: { key, env: envName, value, source: from, expected: issue.message } },
    );
  }
  return { ...parsed.data, home: berthHome, configFile };
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
    imagesDir: config.imagesDir,
    buildCaCerts: config.buildCaCerts,
  };
}
