import type { HealthCheck, HealthReport } from '@berth/client-sdk/protocol';
import type { EventBus } from '../events/bus.js';
import type { Logger } from '../log.js';
import type { Store } from '../store/index.js';
import type { EngineMonitor } from './engine-monitor.js';

/**
 * Named health checks. Liveness is "the process answers"; readiness is every check below.
 * Publishes `daemon.health` whenever the overall status flips.
 */
export class Health {
  private last: 'ok' | 'fail' | null = null;
  private readonly extra: (() => HealthCheck)[] = [];

  constructor(
    private readonly store: Store,
    private readonly engine: EngineMonitor,
    private readonly bus: EventBus,
    private readonly log: Logger,
  ) {}

  private storeCheck(): HealthCheck {
    try {
      this.store.ping();
      return { name: 'store', ok: true, detail: `SQLite open (${this.store.db.name})` };
    } catch (err) {
      return {
        name: 'store',
        ok: false,
        detail: `state database unusable: ${(err as Error).message}`,
        remediation: 'Check the disk and permissions of BERTH_HOME, then restart berthd.',
      };
    }
  }

  /** A check of another part (the config reload): computed for each report, without I/O. */
  addCheck(check: () => HealthCheck): void {
    this.extra.push(check);
  }

  /** Current report from the last engine check (no I/O). */
  snapshot(): HealthReport {
    return this.record([this.storeCheck(), ...this.engine.checks(), ...this.extra.map((c) => c())]);
  }

  /** Re-checks the engine (unless a check is younger than `maxAgeMs`), then reports. */
  async report(maxAgeMs = 0): Promise<HealthReport> {
    await this.engine.refresh(maxAgeMs);
    return this.snapshot();
  }

  private record(checks: HealthCheck[]): HealthReport {
    // A failing warning is reported, not counted: berthd is as ready as before it.
    const status = checks.every((c) => c.ok || c.warning) ? 'ok' : 'fail';
    if (status !== this.last) {
      const failing = checks.filter((c) => !c.ok && !c.warning).map((c) => c.name);
      if (this.last !== null) this.log.info({ status, failing }, `Health changed: ${this.last} -> ${status}`);
      this.bus.publish('daemon.health', { status, previous: this.last, failing });
      this.last = status;
    }
    return { status, checks };
  }
}
