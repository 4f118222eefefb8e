import type Docker from 'dockerode';
import { BerthError } from '@berth/client-sdk/protocol';
import { LABELS } from '../labels.js';
import { engineMessage, status, wrapTransport } from './errors.js';

/** Why `n` is not the network berth asked for, or null when it is. Label values are someone's data: quoted. */
function networkMismatch(n: Docker.NetworkInspectInfo, want: { internal: boolean; labels: Record<string, string> }): string | null {
  if (n.Driver !== 'bridge') return `its driver is ${JSON.stringify(n.Driver)}, not bridge`;
  if (Boolean(n.Internal) !== want.internal) return want.internal ? 'it is not Internal (its containers can reach other networks and the outside)' : 'it is Internal';
  const have = n.Labels ?? {};
  for (const [k, v] of Object.entries(want.labels)) {
    if (have[k] === v) continue;
    // Networks an earlier berthd made lack only the kind label; the Internal flag checked above says the same thing.
    if (k === LABELS.network && have[k] === undefined) continue;
    return have[k] === undefined ? `it lacks the label ${k}=${v}` : `its label ${k} is ${JSON.stringify(have[k])}, not ${JSON.stringify(v)}`;
  }
  return null;
}

/** berth's project networks on the engine: made once, adopted when they are berth's, never joined otherwise. */
export class DockerNetworks {
  constructor(
    private readonly docker: Docker,
    private readonly host: string,
  ) {}

  private async networksNamed(name: string): Promise<Docker.NetworkInspectInfo[]> {
    const rows = await this.docker.listNetworks({ filters: { name: [name] } });
    return rows.filter((n) => n.Name === name);
  }

  async ensureNetwork(name: string, opts: { internal: boolean; labels: Record<string, string> }): Promise<string> {
    try {
      for (let attempt = 0; attempt < 5; attempt++) {
        const found = await this.networksNamed(name);
        if (found.length) return await this.adoptNetwork(name, found, opts);
        try {
          // CheckDuplicate is not atomic on engine 20.10 (concurrent creates both succeed): the list
          // on the next turn is what decides, never this call's result.
          await this.docker.createNetwork({ Name: name, Driver: 'bridge', Internal: opts.internal, Labels: opts.labels, CheckDuplicate: true });
        } catch (err) {
          if (status(err) !== 409) throw err;
        }
      }
      throw new BerthError('CONTAINER_CREATE_FAILED', `network ${name} disappeared each time berth made it`);
    } catch (err) {
      if (err instanceof BerthError) throw err;
      if (status(err) !== undefined) throw new BerthError('CONTAINER_CREATE_FAILED', `cannot create network ${name}: ${engineMessage(err)}`);
      wrapTransport(err, this.host);
    }
  }

  /**
   * Every network in `found` must be berth's; of duplicates, the one to keep is the same for every
   * caller given the same engine state: one with containers attached first (those cannot be removed
   * anyway), then the oldest, then the lowest id. Empty others are removed.
   */
  private async adoptNetwork(name: string, found: Docker.NetworkInspectInfo[], opts: { internal: boolean; labels: Record<string, string> }): Promise<string> {
    for (const n of found) {
      const why = networkMismatch(n, opts);
      if (!why) continue;
      const id = n.Id.slice(0, 12);
      const project = opts.labels[LABELS.project];
      throw new BerthError(
        'NETWORK_CONFLICT',
        `network ${name} (id ${id}) is not berth's ${opts.internal ? 'internal' : 'bridge'} network${project ? ` for project ${project}` : ''}: ${why}. ` +
          `berth will not use it: remove it (docker network rm ${id}) or recreate what uses it under another name, then restart the session`,
        { details: { network: name, id: n.Id, reason: why } },
      );
    }
    if (found.length === 1) return found[0]!.Id;
    const ranked: { id: string; created: number; inUse: boolean }[] = [];
    for (const n of found) {
      try {
        const full = await this.docker.getNetwork(n.Id).inspect();
        ranked.push({ id: n.Id, created: Date.parse(n.Created), inUse: Object.keys(full.Containers ?? {}).length > 0 });
      } catch (err) {
        if (status(err) !== 404) throw err;
      }
    }
    ranked.sort((a, b) => Number(b.inUse) - Number(a.inUse) || a.created - b.created || (a.id < b.id ? -1 : 1));
    const [keep, ...rest] = ranked;
    if (!keep) throw new BerthError('NETWORK_NOT_FOUND', `every network named ${name} disappeared while berth chose one`);
    for (const extra of rest.filter((r) => !r.inUse)) {
      try {
        await this.docker.getNetwork(extra.id).remove();
      } catch (err) {
        // Gone already, or a container joined it meanwhile: it stays until it is empty.
        if (status(err) !== 404 && status(err) !== 403 && status(err) !== 409) throw err;
      }
    }
    return keep.id;
  }

  async removeNetwork(name: string, owner: Record<string, string> = { [LABELS.managed]: 'true' }): Promise<void> {
    try {
      for (const n of await this.networksNamed(name)) {
        if (!Object.entries(owner).every(([k, v]) => n.Labels?.[k] === v)) continue;
        try {
          await this.docker.getNetwork(n.Id).remove();
        } catch (err) {
          if (status(err) !== 404) throw err;
        }
      }
    } catch (err) {
      wrapTransport(err, this.host);
    }
  }
}
