import type { EngineMonitor } from '../health/engine-monitor.js';
import type { Clock } from '../shared/clock.js';
import type { Logger } from '../log.js';
import type { ContainerRuntime } from '../runtime/port.js';
import type { Reconciler } from './controller.js';

/**
 * Feeds the reconciler from the engine's event stream. Subscribes first (replaying from the last
 * event seen, or a little before now), then enqueues every session, so nothing that happens between
 * the listing and the subscription is lost. After a break it resubscribes with `since`.
 */
export class EngineWatcher {
  constructor(
    private readonly runtime: ContainerRuntime,
    private readonly reconciler: Reconciler,
    private readonly monitor: EngineMonitor,
    private readonly log: Logger,
    private readonly clock: Clock,
  ) {}

  async start(signal: AbortSignal): Promise<void> {
    let since: bigint | null = null;
    let wasUp = false;
    while (!signal.aborted) {
      if (!this.monitor.engineStatus.available) {
        wasUp = false;
        await this.clock.sleep(250, signal);
        continue;
      }
      const from = since ?? BigInt(this.clock.now().getTime() - 5000) * 1_000_000n;
      try {
        const events = await this.runtime.events(this.reconciler.ownLabels, from, signal);
        if (!wasUp) this.log.info('Watching engine events');
        wasUp = true;
        this.reconciler.resyncSoon();
        for await (const e of events) {
          since = e.timeNano;
          if (e.sessionId) this.reconciler.enqueue(e.sessionId);
        }
      } catch (err) {
        if (signal.aborted) break;
        this.log.debug({ err: (err as Error).message }, 'Engine event stream broke; resubscribing');
        this.monitor.poke();
      }
      await this.clock.sleep(500, signal);
    }
  }
}
