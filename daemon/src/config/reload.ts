import { createHash } from 'node:crypto';
import { realpathSync, statSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { watch } from 'chokidar';
import { parse } from 'yaml';
import { BerthError, type ConfigProblem, type HealthCheck } from '@berth/client-sdk/protocol';
import type { EventBus } from '../events/bus.js';
import type { Logger } from '../log.js';
import type { Config, ConfigKey, Layers } from './index.js';
import { readSmallFile } from './layers.js';
import { diffConfig, shownValue, UNLOGGED_KEYS } from './reload-policy.js';

export interface ConfigWatcherDeps {
  /** The running configuration: live keys are updated in it, in place (whoever reads it at use sees them). */
  current: Config;
  /** The layers `current` was loaded from. */
  layers: Layers;
  /** The same load and validation as at startup (same file, environment and flags). Throws CONFIG_INVALID. */
  load: () => { config: Config; layers: Layers };
  /** Setters of the components that copied a live key's value; called after `current` has the new value. */
  apply: Partial<Record<ConfigKey, (config: Config) => void>>;
  /** Called with the names of the secrets that changed (added, changed or removed). */
  onSecretsChanged?: (names: string[]) => void;
  bus: EventBus;
  log: Logger;
  /** Wait after the last file event before reloading (an editor's save is several events). Default 200 ms. */
  debounceMs?: number;
}

export interface ReloadResult {
  ok: boolean;
  keys: ConfigKey[];
  restartNeeded: ConfigKey[];
  secrets: string[];
  problem: ConfigProblem | null;
}

/**
 * Reloads config.yaml and secrets.yaml when either changes (their directories are watched, so an
 * editor's rename-on-save, a delete and a re-create are seen) or when asked (SIGHUP). A valid
 * change applies at once to the keys RELOAD_POLICY calls live and is logged key by key; an invalid
 * one changes nothing, is reported (`config.invalid`, the `config` health check) until a later
 * reload is valid. Secret values are hashed in memory to tell which names changed, never logged.
 */
export class ConfigWatcher {
  private problem: ConfigProblem | null = null;
  private secretHashes: Map<string, string>;
  private readonly reportedRestart = new Map<ConfigKey, string>();
  private readonly reportedShadow = new Map<ConfigKey, string>();
  readonly configFile: string;
  readonly secretsFile: string;
  private markReady: () => void = () => {};
  /** Resolves once the files are watched (and an edit made while berthd was starting has been reloaded). */
  readonly ready = new Promise<void>((r) => (this.markReady = r));

  constructor(private readonly d: ConfigWatcherDeps) {
    this.configFile = d.current.configFile ?? join(d.current.home, 'config.yaml');
    this.secretsFile = join(d.current.home, 'secrets.yaml');
    let hashes = new Map<string, string>();
    try {
      hashes = this.readSecrets();
    } catch {
      // reported on the first reload, when it matters
    }
    this.secretHashes = hashes;
  }

  /** The `config` health check: a warning, so an unapplied edit shows without making berthd unready. */
  check(): HealthCheck {
    if (!this.problem) {
      const pending = [...this.reportedRestart.keys()];
      const detail = `running configuration applied from ${this.configFile} and ${this.secretsFile}`;
      return { name: 'config', ok: true, warning: true, detail: pending.length ? `${detail}; needs a restart to apply: ${pending.join(', ')}` : detail };
    }
    return {
      name: 'config',
      ok: false,
      warning: true,
      detail: `${this.problem.key}: ${this.problem.message}`,
      remediation: `Fix ${this.problem.key} in ${this.problem.file}: berthd keeps its running configuration and applies the file once it is valid (on save unless configWatch is false, on SIGHUP, or \`berth config reload\`).`,
    };
  }

  /**
   * The files, and the targets of those that are links to regular files (a config.yaml kept with
   * one's dotfiles): their directories are watched, not descended into.
   */
  private watchedFiles(): string[] {
    const out: string[] = [];
    for (const f of [resolve(this.configFile), resolve(this.secretsFile)]) {
      out.push(f);
      try {
        const real = realpathSync(f);
        if (real !== f && statSync(real).isFile()) out.push(real);
      } catch {
        // absent, or a dangling link: its directory is watched for it
      }
    }
    return out;
  }

  async start(signal: AbortSignal): Promise<void> {
    if (signal.aborted) return;
    if (!this.d.current.configWatch) {
      this.d.log.info('Config files not watched (configWatch: false): SIGHUP or `berth config reload` reads them again');
      this.markReady();
      await new Promise<void>((r) => signal.addEventListener('abort', () => r(), { once: true }));
      return;
    }
    const files = new Set<string>();
    const dirs = new Set<string>();
    const relevant = (p: string) => dirs.has(resolve(p)) || files.has(resolve(p));
    const watcher = watch([], { ignoreInitial: true, followSymlinks: false, depth: 0, ignored: (p: string) => !relevant(p), ignorePermissionErrors: true });
    const track = () => {
      for (const f of this.watchedFiles()) {
        if (files.has(f)) continue;
        files.add(f);
        if (!dirs.has(dirname(f))) {
          dirs.add(dirname(f));
          watcher.add(dirname(f));
        }
      }
    };
    let timer: NodeJS.Timeout | null = null;
    watcher.on('all', (_event, p) => {
      if (!files.has(resolve(p))) return;
      if (timer) clearTimeout(timer);
      timer = setTimeout(() => {
        timer = null;
        this.reload(`file ${basename(p)}`);
      }, this.d.debounceMs ?? 200);
    });
    watcher.on('error', (err) => this.d.log.warn({ err: (err as Error).message }, 'Failed watching the config files'));
    watcher.once('ready', () => {
      this.d.log.info({ files: [...files] }, 'Watching the config files');
      // What changed between the startup load and the watch would otherwise wait for the next edit.
      this.reload('startup');
      this.markReady();
    });
    track();
    this.retrack = track;
    signal.addEventListener('abort', () => this.markReady(), { once: true });
    await new Promise<void>((r) => signal.addEventListener('abort', () => r(), { once: true }));
    this.retrack = null;
    if (timer) clearTimeout(timer);
    await watcher.close().catch(() => {});
  }

  /** One reload, synchronous (the files are small and capped), so two never interleave. */
  reload(trigger: string): ReloadResult {
    try {
      return this.reloadOnce(trigger);
    } finally {
      // A link may point elsewhere now.
      this.retrack?.();
    }
  }

  private retrack: (() => void) | null = null;

  private reloadOnce(trigger: string): ReloadResult {
    const { log } = this.d;
    let next: { config: Config; layers: Layers };
    let secrets: Map<string, string>;
    try {
      next = this.d.load();
    } catch (err) {
      return this.refuse(trigger, err, this.configFile);
    }
    try {
      secrets = this.readSecrets();
    } catch (err) {
      return this.refuse(trigger, err, this.secretsFile);
    }

    const diff = diffConfig(this.d.current, this.d.layers.file, next.config, next.layers);
    const current = this.d.current as Record<ConfigKey, unknown>;
    for (const { key, by } of diff.live) {
      const from = current[key];
      current[key] = (next.config as Record<ConfigKey, unknown>)[key];
      try {
        this.d.apply[key]?.(this.d.current);
        log.info({ key, from: shownValue(key, from), to: shownValue(key, current[key]), by }, `Applied ${key}`);
      } catch (err) {
        log.error({ key, by, err: (err as Error).message }, `Failed applying ${key}`);
      }
    }
    for (const key of diff.restart) {
      const to = JSON.stringify((next.config as Record<ConfigKey, unknown>)[key]);
      if (this.reportedRestart.get(key) === to) continue;
      this.reportedRestart.set(key, to);
      log.warn({ key, running: shownValue(key, current[key]), configured: shownValue(key, (next.config as Record<ConfigKey, unknown>)[key]) }, `${key} changed: needs a restart to apply`);
    }
    for (const key of [...this.reportedRestart.keys()]) if (!diff.restart.includes(key)) this.reportedRestart.delete(key);
    for (const { key, by } of diff.shadowed) {
      const v = JSON.stringify(next.layers.file[key] ?? null);
      if (this.reportedShadow.get(key) === v) continue;
      this.reportedShadow.set(key, v);
      log.warn({ key, by }, `${key} changed in ${this.configFile} but ${by} sets it: the file's value is ignored`);
    }

    const changedSecrets = [...new Set([...this.secretHashes.keys(), ...secrets.keys()])].filter((n) => this.secretHashes.get(n) !== secrets.get(n)).sort();
    this.secretHashes = secrets;
    if (changedSecrets.length) {
      log.info({ secrets: changedSecrets }, 'Secrets changed: new sessions get the new values; running sessions keep theirs');
      try {
        this.d.onSecretsChanged?.(changedSecrets);
      } catch (err) {
        log.error({ err: (err as Error).message }, 'Failed applying the secrets change');
      }
    }

    this.d.layers = next.layers;
    const wasInvalid = this.problem !== null;
    this.problem = null;
    if (wasInvalid) log.info({ trigger }, 'Config valid again');
    const keys = diff.live.map((c) => c.key);
    if (keys.length || diff.restart.length || changedSecrets.length || wasInvalid) {
      this.d.bus.publish('config.changed', { trigger, keys, restartNeeded: diff.restart, secrets: changedSecrets });
    } else {
      log.debug({ trigger }, 'Config reloaded: no change');
    }
    return { ok: true, keys, restartNeeded: diff.restart, secrets: changedSecrets, problem: null };
  }

  private refuse(trigger: string, err: unknown, file: string): ReloadResult {
    const details = err instanceof BerthError ? (err.details as { key?: unknown; file?: unknown; expected?: unknown; source?: unknown } | undefined) : undefined;
    const key = typeof details?.key === 'string' && details.key ? details.key : basename(file);
    const message = UNLOGGED_KEYS.has(key) ? `invalid ${key} from ${String(details?.source ?? file)}: expected ${String(details?.expected ?? 'a valid value')}` : (err as Error).message;
    this.problem = { trigger, key, file: typeof details?.file === 'string' ? details.file : file, message };
    this.d.log.warn({ trigger, key, err: message }, `Config change not applied (${key}): keeping the running configuration`);
    this.d.bus.publish('config.invalid', this.problem);
    return { ok: false, keys: [], restartNeeded: [], secrets: [], problem: this.problem };
  }

  /** Name → hash of each secret's value. No file: none. Throws for a file berthd would refuse. */
  private readSecrets(): Map<string, string> {
    let text: string;
    try {
      text = readSmallFile(this.secretsFile);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return new Map();
      throw new BerthError('CONFIG_INVALID', `cannot read ${this.secretsFile}: ${(err as Error).message}`, { details: { file: this.secretsFile } });
    }
    let doc: unknown;
    try {
      doc = parse(text);
    } catch (err) {
      throw new BerthError('CONFIG_INVALID', `${this.secretsFile} is not valid YAML: ${(err as Error).message}`, { details: { file: this.secretsFile } });
    }
    if (doc === null || doc === undefined) return new Map();
    if (typeof doc !== 'object' || Array.isArray(doc)) {
      throw new BerthError('CONFIG_INVALID', `${this.secretsFile} must be a mapping of secret names to values`, { details: { file: this.secretsFile } });
    }
    const out = new Map<string, string>();
    for (const [name, v] of Object.entries(doc as Record<string, unknown>)) {
      out.set(name, createHash('sha256').update(String(v)).digest('hex'));
    }
    return out;
  }
}
