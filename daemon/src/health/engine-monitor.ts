import type { EngineStatus, HealthCheck } from '@berth/client-sdk/protocol';
import type { EventBus } from '../events/bus.js';
import type { Logger } from '../log.js';
import type { EnginePort, ImageInfo } from '../runtime/port.js';
import { systemClock, type Clock } from '../shared/clock.js';

export interface BackoffPolicy {
  initialMs: number;
  maxMs: number;
  /** Re-check interval while the engine is up, so an outage is noticed without a caller. */
  healthyIntervalMs: number;
}

export const defaultBackoff: BackoffPolicy = { initialMs: 1000, maxMs: 5000, healthyIntervalMs: 10_000 };

const ENGINE_REMEDIATION =
  'Start the Docker engine (`sudo systemctl start docker`, or `sudo bash scripts/ensure-docker.sh`), ' +
  'or point DOCKER_HOST at a running one. berthd keeps retrying and recovers on its own.';

/**
 * Watches the Docker engine and the default agent image. Checks on a loop (exponential backoff while
 * the engine is down, a slow interval while it is up) and whenever a caller asks for fresh health;
 * announces every transition once, in the log and on the event bus. Never falls back to local mode.
 */
export class EngineMonitor {
  private status: EngineStatus;
  private image: ImageInfo | null = null;
  private imageError: string | null = null;
  private failures = 0;
  private inflight: Promise<void> | null = null;
  private wake: (() => void) | null = null;
  /** Called after every check; Health uses it to announce status flips the loop discovers. */
  onChecked: (() => void) | null = null;

  constructor(
    private readonly engine: EnginePort,
    private defaultImage: string,
    private readonly bus: EventBus,
    private readonly log: Logger,
    private readonly clock: Clock = systemClock,
    private readonly backoff: BackoffPolicy = defaultBackoff,
  ) {
    this.status = { available: false, host: engine.host, error: 'not checked yet' };
  }

  get engineStatus(): EngineStatus {
    return { ...this.status };
  }

  /**
   * Runs one check now, coalescing concurrent callers. With `maxAgeMs`, a check younger than that
   * is good enough and nothing is sent to the engine.
   */
  async refresh(maxAgeMs = 0): Promise<void> {
    const last = this.status.lastCheckedAt ? Date.parse(this.status.lastCheckedAt) : 0;
    if (!this.inflight && maxAgeMs > 0 && this.clock.now().getTime() - last < maxAgeMs) return;
    if (!this.inflight) {
      this.inflight = this.check().finally(() => {
        this.inflight = null;
        this.onChecked?.();
      });
    }
    return this.inflight;
  }

  checks(): HealthCheck[] {
    const s = this.status;
    const engine: HealthCheck = s.available
      ? { name: 'engine', ok: true, detail: `Docker ${s.version} (API ${s.apiVersion}) at ${s.host}` }
      : {
          name: 'engine',
          ok: false,
          detail: `Docker engine at ${s.host} is unreachable: ${s.error}`,
          remediation: ENGINE_REMEDIATION,
        };
    let image: HealthCheck;
    if (!s.available) {
      image = {
        name: 'default-image',
        ok: false,
        detail: `cannot check image ${this.defaultImage}: engine unavailable`,
        remediation: ENGINE_REMEDIATION,
      };
    } else if (this.image) {
      image = { name: 'default-image', ok: true, detail: `${this.defaultImage} present (${this.image.id.slice(0, 19)})` };
    } else {
      image = {
        name: 'default-image',
        ok: false,
        detail: this.imageError ?? `default agent image ${this.defaultImage} is not on the engine`,
        remediation: `${this.buildHint()} or set AGENT_DEFAULT_IMAGE to an image the engine has.`,
      };
    }
    return [engine, image];
  }

  private buildHint(): string {
    return this.defaultImage.startsWith('claude-agent-')
      ? `Build the shipped images (\`berth image build-defaults\`)`
      : `Build it (\`berth image build ${this.defaultImage} --file path/to/Dockerfile\`)`;
  }

  /** The monitor loop: resolves when `signal` aborts. */
  async start(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      await this.refresh();
      const delay = this.status.available
        ? this.backoff.healthyIntervalMs
        : Math.min(this.backoff.maxMs, this.backoff.initialMs * 2 ** Math.max(0, this.failures - 1));
      if (!this.status.available) {
        this.status.nextRetryAt = new Date(this.clock.now().getTime() + delay).toISOString();
      }
      if (signal.aborted) break;
      const wakeCtl = new AbortController();
      this.wake = () => wakeCtl.abort();
      await this.clock.sleep(delay, AbortSignal.any([signal, wakeCtl.signal]));
      this.wake = null;
    }
  }

  /** Cut the current wait short (used by tests and when a caller reports an engine error). */
  /** AGENT_DEFAULT_IMAGE changed live: checked again at once. */
  setDefaultImage(name: string): void {
    if (name === this.defaultImage) return;
    this.defaultImage = name;
    this.image = null;
    this.imageError = null;
    void this.refresh(0).catch(() => {});
  }

  poke(): void {
    this.wake?.();
  }

  private async check(): Promise<void> {
    const wasAvailable = this.status.available;
    const firstCheck = this.status.lastCheckedAt === undefined;
    try {
      const info = await this.engine.info();
      this.status = {
        available: true,
        host: this.engine.host,
        version: info.version,
        apiVersion: info.apiVersion,
        lastCheckedAt: this.clock.now().toISOString(),
      };
      this.failures = 0;
      try {
        const hadImage = this.image !== null;
        this.image = await this.engine.image(this.defaultImage);
        this.imageError = null;
        if (!this.image && (hadImage || firstCheck || !wasAvailable)) {
          this.log.error(
            { image: this.defaultImage },
            `Default agent image ${this.defaultImage} is missing. ${this.buildHint()} or set AGENT_DEFAULT_IMAGE.`,
          );
        }
      } catch (err) {
        this.image = null;
        this.imageError = `cannot inspect image ${this.defaultImage}: ${(err as Error).message}`;
      }
      if (!wasAvailable) {
        this.log.info({ host: this.engine.host, version: info.version, apiVersion: info.apiVersion }, 'Docker engine available');
        this.bus.publish('engine.available', { version: info.version, apiVersion: info.apiVersion });
      }
    } catch (err) {
      this.failures += 1;
      const message = (err as Error).message || String(err);
      this.status = {
        available: false,
        host: this.engine.host,
        error: message,
        lastCheckedAt: this.clock.now().toISOString(),
      };
      this.image = null;
      if (wasAvailable || firstCheck) {
        const nextRetryAt = new Date(this.clock.now().getTime() + this.backoff.initialMs).toISOString();
        this.log.error(
          { host: this.engine.host, err: message },
          `Docker engine unreachable at ${this.engine.host}: ${message}. ${ENGINE_REMEDIATION}`,
        );
        this.bus.publish('engine.unavailable', { error: message, nextRetryAt });
        // A caller found the outage while the loop sleeps its healthy interval: switch it to backoff now.
        this.poke();
      }
    }
  }
}
