import { closeSync, constants, fstatSync, openSync, readSync } from 'node:fs';
import { createRequire } from 'node:module';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BerthError } from '@berth/client-sdk/protocol';

/**
 * The layers of berthd's configuration, merged but not yet validated: defaults < config file
 * (`$BERTH_HOME/config.yaml` or `--config FILE`) < environment < command-line flags. Kept free of
 * the validator (and of the YAML parser unless a config file exists) because berthd reads it
 * before it listens: the socket path comes from here.
 */
export const configKeys = {
  socket: 'BERTH_SOCKET',
  socketGroup: 'BERTH_SOCKET_GROUP',
  socketMode: 'BERTH_SOCKET_MODE',
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
  gitTimeoutSec: 'BERTH_GIT_TIMEOUT_SEC',
  imagesDir: 'BERTH_IMAGES_DIR',
  buildCaCerts: 'BERTH_BUILD_CA_CERTS',
  modelUpstream: 'BERTH_MODEL_UPSTREAM',
  modelCredential: 'BERTH_MODEL_CREDENTIAL',
  modelMaxInflight: 'BERTH_MODEL_MAX_INFLIGHT',
  maxRunning: 'BERTH_MAX_RUNNING',
  agentStuckTimeoutMinutes: 'AGENT_STUCK_TIMEOUT_MINUTES',
  activityCheckSec: 'BERTH_ACTIVITY_CHECK_SEC',
  notifyWebhooks: 'BERTH_NOTIFY_WEBHOOKS',
  configWatch: 'BERTH_CONFIG_WATCH',
  backupKeep: 'BERTH_BACKUP_KEEP',
  maintenanceCron: 'BERTH_MAINTENANCE_CRON',
  logSegmentBytes: 'BERTH_LOG_SEGMENT_BYTES',
  logRetentionBytes: 'BERTH_LOG_RETENTION_BYTES',
  logRetentionTotalBytes: 'BERTH_LOG_RETENTION_TOTAL_BYTES',
  logRetentionDays: 'BERTH_LOG_RETENTION_DAYS',
  logEngineBytes: 'BERTH_LOG_ENGINE_BYTES',
} as const;

export type ConfigKey = keyof typeof configKeys;

/** images/ of this checkout or package (daemon/{src,dist}/config/ → images/). */
export const SHIPPED_IMAGES_DIR = fileURLToPath(new URL('../../../images', import.meta.url));

export interface LoadOptions {
  env?: NodeJS.ProcessEnv;
  /** `--config FILE`; when absent, `$BERTH_HOME/config.yaml` is read if it exists. */
  configFile?: string;
  /** Command-line flags; they beat everything else. */
  overrides?: Partial<Record<ConfigKey, string>>;
}

export interface Layers {
  home: string;
  configFile: string | null;
  /** Every key's winning value, as text (or null), before validation. */
  raw: Record<ConfigKey, unknown>;
  /** Where each non-default value came from: `FILE: key`, an environment name, or `--flag`. */
  source: Partial<Record<ConfigKey, string>>;
  /** What the config file says, key by key, whether or not the environment or a flag beats it. */
  file: Partial<Record<ConfigKey, unknown>>;
}

/** Largest config.yaml or secrets.yaml berthd reads. */
export const MAX_CONFIG_FILE = 1024 * 1024;

/**
 * A small regular file's text, read without blocking: a FIFO, a device or a link to one is refused
 * (it would hang berthd at startup or on reload), as is a file over `maxBytes`. Throws an Error
 * whose message says why; ENOENT keeps its `code`.
 */
export function readSmallFile(path: string, maxBytes = MAX_CONFIG_FILE): string {
  const fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new Error('not a regular file');
    if (st.size > maxBytes) throw new Error(`${st.size} bytes; the limit is ${maxBytes}`);
    // Sized by the file (a byte more to see it grow), grown while it grows, never past the limit.
    let buf = Buffer.allocUnsafe(st.size + 1);
    let n = 0;
    for (;;) {
      const r = readSync(fd, buf, n, buf.length - n, null);
      if (r === 0) break;
      n += r;
      if (n > maxBytes) throw new Error(`grew past the limit of ${maxBytes} bytes while read`);
      if (n === buf.length) buf = Buffer.concat([buf, Buffer.allocUnsafe(Math.min(buf.length, maxBytes + 1 - buf.length))]);
    }
    return buf.subarray(0, n).toString('utf8');
  } finally {
    closeSync(fd);
  }
}

function expandHome(p: string, home: string): string {
  if (p === '~') return home;
  if (p.startsWith('~/')) return join(home, p.slice(2));
  return p;
}

function parseYaml(text: string): unknown {
  // Loaded only when there is a file to parse: most daemons have none, and it costs startup time.
  const { parse } = createRequire(import.meta.url)('yaml') as typeof import('yaml');
  return parse(text);
}

/** Reads the file and merges the layers. Throws CONFIG_INVALID for an unreadable file, bad YAML or an unknown key. */
export function configLayers(opts: LoadOptions = {}): Layers {
  const env = opts.env ?? process.env;
  const userHome = env.HOME || homedir();
  const home = resolve(expandHome(env.BERTH_HOME || join(userHome, '.berth'), userHome));

  const raw: Record<ConfigKey, unknown> = {
    socket: join(home, 'berth.sock'),
    socketGroup: null,
    socketMode: null,
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
    gitTimeoutSec: '120',
    imagesDir: SHIPPED_IMAGES_DIR,
    buildCaCerts: '/usr/local/share/ca-certificates',
    modelUpstream: 'https://api.anthropic.com',
    // claude-login when the host has one, else none: decided when the bridge starts (bridge/credential.ts).
    modelCredential: 'auto',
    modelMaxInflight: '8',
    maxRunning: 'auto',
    agentStuckTimeoutMinutes: '10',
    activityCheckSec: '15',
    notifyWebhooks: null,
    configWatch: 'true',
    backupKeep: '7',
    maintenanceCron: null,
    logSegmentBytes: '16m',
    logRetentionBytes: '256m',
    logRetentionTotalBytes: '4g',
    logRetentionDays: '14',
    logEngineBytes: '128m',
  };
  const source: Partial<Record<ConfigKey, string>> = {};
  const file: Partial<Record<ConfigKey, unknown>> = {};

  let configFile: string | null = null;
  const explicit = opts.configFile !== undefined;
  const candidate = explicit ? resolve(opts.configFile!) : join(home, 'config.yaml');
  let text: string | null = null;
  try {
    text = readSmallFile(candidate);
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
        // A list or mapping (notifyWebhooks) travels as JSON text, as its environment variable does.
        raw[k as ConfigKey] = v === null || v === undefined ? null : typeof v === 'string' ? v : typeof v === 'object' ? JSON.stringify(v) : String(v);
        source[k as ConfigKey] = `${candidate}: ${k}`;
        file[k as ConfigKey] = raw[k as ConfigKey];
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
  return { home, configFile, raw, source, file };
}
