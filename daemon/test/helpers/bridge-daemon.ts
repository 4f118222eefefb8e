import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { BerthEvent } from '@berth/client-sdk/protocol';
import { startWithProject, type DaemonOptions, type DaemonProcess } from './daemon.js';
import { ModelUpstream } from './model-upstream.mjs';

/** Every event a daemon publishes from now on, in order, until stop() (or the daemon goes), appended to `events`. */
export function collectEvents(d: DaemonProcess, events: BerthEvent[] = []): { events: BerthEvent[]; stop: () => void } {
  const ac = new AbortController();
  void (async () => {
    for await (const e of d.client.events({ signal: ac.signal })) events.push(e as BerthEvent);
  })().catch(() => {});
  return { events, stop: () => ac.abort() };
}

export interface BridgeDaemon extends AsyncDisposable {
  d: DaemonProcess;
  up: ModelUpstream;
  events: BerthEvent[];
}

/**
 * A berthd (project `web`) whose Claude bridges relay to a stand-in Messages API, with the model
 * credential from `secrets.yaml` (`secrets`, the first one the credential), its events collected.
 */
export async function startBridgeDaemon(o: { upstream?: Parameters<typeof ModelUpstream.start>[0]; secrets: Record<string, string>; env?: Record<string, string>; opts?: DaemonOptions }): Promise<BridgeDaemon> {
  const up = await ModelUpstream.start(o.upstream ?? {});
  const first = Object.keys(o.secrets)[0]!;
  const { d } = await startWithProject({ ...o.opts, env: { BERTH_MODEL_UPSTREAM: up.url, BERTH_MODEL_CREDENTIAL: `secret:${first}`, ...o.env } });
  await writeFile(join(d.home, 'secrets.yaml'), Object.entries(o.secrets).map(([k, v]) => `${k}: ${v}\n`).join(''), { mode: 0o600 });
  const { events, stop } = collectEvents(d);
  return {
    d,
    up,
    events,
    async [Symbol.asyncDispose]() {
      stop();
      await d[Symbol.asyncDispose]();
      await up.close();
    },
  };
}
