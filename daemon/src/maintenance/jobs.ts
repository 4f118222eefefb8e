import { IMAGE_LABELS } from '../images/service.js';
import type { Logger } from '../log.js';
import { LABELS } from '../runtime/labels.js';
import type { ContainerRuntime } from '../runtime/port.js';
import type { Backups } from './backup.js';
import type { JobSummary, MaintenanceJob } from './runner.js';

/** What one pruner did: how many items it removed and, for the summary, the first few of them. */
export interface PruneResult {
  name: string;
  removed: number;
  items?: string[];
  /** Bytes freed, where the pruner counts them. */
  bytes?: number;
}

/** One kind of pruning; the prune job runs them all in turn (one failing does not stop the others). */
export type Pruner = () => Promise<PruneResult>;

/** Items named in a summary at most (the counts are always whole). */
const SUMMARY_ITEMS = 20;

export function backupJob(backups: Backups): MaintenanceJob {
  return {
    name: 'backup',
    // Daily at 03:17 local time: off the hour, when most schedulers pile up.
    cron: '17 3 * * *',
    run: async () => {
      const r = await backups.backup();
      return { path: r.path, bytes: r.bytes, pruned: r.pruned };
    },
  };
}

/** `pruners`: the records and logs past retention (wired in main); a throw in one is reported in the summary. */
export function pruneJob(pruners: Pruner[]): MaintenanceJob {
  return {
    name: 'prune',
    cron: '43 4 * * *',
    run: async (signal) => {
      const results: PruneResult[] = [];
      const failed: { name: string; error: string }[] = [];
      for (const [i, p] of pruners.entries()) {
        if (signal.aborted) break;
        try {
          const r = await p();
          results.push({ ...r, ...(r.items ? { items: r.items.slice(0, SUMMARY_ITEMS) } : {}) });
        } catch (err) {
          failed.push({ name: `pruner ${i}`, error: (err as Error).message });
        }
      }
      if (failed.length && !results.length) throw new Error(failed.map((f) => f.error).join('; '));
      return { removed: results.reduce((n, r) => n + r.removed, 0), results, failed } satisfies JobSummary;
    },
  };
}

/**
 * Removes dangling images this berthd built: untagged (a rebuild of the same tag took the name),
 * labelled `dev.berth.image` and this instance, and made into no container at all. A user's image,
 * another berthd's, or one any container (a session's, stopped ones included) was made from is never
 * touched; the engine refuses removing one a container uses, which is counted as kept.
 */
export function imagesJob(runtime: Pick<ContainerRuntime, 'danglingImages' | 'removeImage'>, instanceId: string, log: Logger): MaintenanceJob {
  return {
    name: 'images',
    cron: '29 4 * * *',
    run: async (signal) => {
      const images = await runtime.danglingImages({ [IMAGE_LABELS.image]: 'true', [LABELS.instance]: instanceId });
      const removed: string[] = [];
      const kept: string[] = [];
      let bytes = 0;
      for (const img of images) {
        if (signal.aborted) break;
        try {
          await runtime.removeImage(img.id);
          removed.push(img.id);
          bytes += img.sizeBytes;
        } catch (err) {
          kept.push(img.id);
          log.info({ image: img.id, err: (err as Error).message }, 'Kept a dangling image the engine would not remove');
        }
      }
      return { removed: removed.length, bytes, images: removed.slice(0, SUMMARY_ITEMS), kept: kept.length };
    },
  };
}

/** The checkout repairs (worktrees berth no longer records, stale locks), every 10 minutes and at start. */
export function checkoutsJob(repairAll: () => Promise<string[]>): MaintenanceJob {
  return {
    name: 'checkouts',
    cron: '*/10 * * * *',
    atStart: true,
    run: async () => {
      const done = await repairAll();
      return { repaired: done.length, items: done.slice(0, SUMMARY_ITEMS) };
    },
  };
}
