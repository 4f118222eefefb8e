import type { Config, ConfigKey, Layers } from './index.js';

/**
 * How a change of each config key applies when config.yaml is reloaded (file watch, SIGHUP).
 * `live`: at once, by the component named (berthd's composition root wires the setter); `restart`:
 * logged and evented as needing a restart, and the running value keeps governing. A key added
 * without an entry here needs a restart: declare it `live` once something takes the new value.
 */
export type KeyReload = { apply: 'live'; by: string } | { apply: 'restart' };

const live = (by: string): KeyReload => ({ apply: 'live', by });

export const RELOAD_POLICY: Partial<Record<ConfigKey, KeyReload>> = {
  logLevel: live('logger'),
  resyncSec: live('reconciler and pools'),
  gitTimeoutSec: live('git'),
  agentDefaultImage: live('new sessions, images, engine check'),
  agentMemoryLimit: live('new sessions'),
  agentCpuLimit: live('new sessions'),
  agentPidsLimit: live('new sessions'),
  agentRuntime: live('new sessions'),
  agentDockerAccess: live('new sessions'),
  notifyWebhooks: live('notifier'),
  modelUpstream: live('bridge'),
  modelCredential: live('bridge'),
  modelMaxInflight: live('bridge'),
};

/** Keys whose values are not logged or evented on reload: a webhook URL may carry a token (path, query, userinfo). */
export const UNLOGGED_KEYS: ReadonlySet<string> = new Set<ConfigKey>(['notifyWebhooks']);

/** A key's value as the reload logs it. */
export function shownValue(key: ConfigKey, value: unknown): unknown {
  if (!UNLOGGED_KEYS.has(key)) return value;
  return Array.isArray(value) ? `(${value.length} entries, not logged)` : '(not logged)';
}

export function reloadOf(key: ConfigKey): KeyReload {
  return RELOAD_POLICY[key] ?? { apply: 'restart' };
}

export interface ConfigDiff {
  /** Changed keys that apply at once. */
  live: { key: ConfigKey; by: string }[];
  /** Changed keys that need a restart. */
  restart: ConfigKey[];
  /** Keys the file changed but the environment or a flag sets: nothing changes. */
  shadowed: { key: ConfigKey; by: string }[];
}

const same = (a: unknown, b: unknown) => a === b || JSON.stringify(a) === JSON.stringify(b);

/** What differs between the running configuration and a freshly loaded one, key by key. Pure. */
export function diffConfig(running: Config, runningFile: Layers['file'], next: Config, nextLayers: Pick<Layers, 'file' | 'source'>): ConfigDiff {
  const out: ConfigDiff = { live: [], restart: [], shadowed: [] };
  const keys = new Set([...Object.keys(running), ...Object.keys(next)].filter((k) => k !== 'home' && k !== 'configFile')) as Set<ConfigKey>;
  for (const key of keys) {
    if (!same(running[key], next[key])) {
      const how = reloadOf(key);
      if (how.apply === 'live') out.live.push({ key, by: how.by });
      else out.restart.push(key);
      continue;
    }
    const from = nextLayers.source[key];
    if (!same(runningFile[key], nextLayers.file[key]) && from !== undefined && !from.includes(': ')) {
      out.shadowed.push({ key, by: from });
    }
  }
  return out;
}
