import { BerthError, type MergeResult, type RemoveResult } from '@berth/client-sdk/protocol';
import type { EventBus } from '../events/bus.js';
import type { ContainerRuntime } from '../runtime/port.js';
import type { SessionRecord, SessionsRepo } from '../store/sessions.js';
import type { SessionCheckouts } from './checkouts.js';
import type { SessionScheduler } from './scheduler.js';
import { waitForSession } from './wait.js';

/**
 * What happens to a session's work at its end: merging its branch (optionally committing what is
 * uncommitted first) and removing it without losing anything.
 */
export class SessionWork {
  constructor(
    private readonly d: {
      sessions: SessionsRepo;
      checkouts: SessionCheckouts;
      runtime: ContainerRuntime;
      reconciler: SessionScheduler;
      bus: EventBus;
      now: () => Date;
      resolve: (idOrName: string) => SessionRecord;
    },
  ) {}

  /**
   * Removes the container and volume, then the checkout, never losing work: a checkout with
   * uncommitted changes is refused unless `force` (which saves them on refs/berth/wip/<name>). A
   * running session is refused when `stop` is false (SESSION_RUNNING), else stopped first.
   */
  async remove(s: SessionRecord, opts: { force?: boolean; deleteBranch?: boolean; stop?: boolean } = {}): Promise<RemoveResult> {
    if (opts.stop === false && (s.state === 'running' || s.state === 'creating' || s.state === 'stopping')) {
      throw new BerthError('SESSION_RUNNING', `session ${s.name} is ${s.state}; stop it before removing it`, { details: { id: s.id, name: s.name, state: s.state } });
    }
    if (s.checkoutDir && !opts.force) {
      const dirty = await this.d.checkouts.dirty(s);
      if (dirty.length) {
        // How to commit them depends on whether the agent's container still runs.
        const running = s.state === 'running';
        throw new BerthError('DIRTY_CHECKOUT', `session ${s.name} has uncommitted changes: ${dirty.slice(0, 5).join(', ')}${dirty.length > 5 ? ' …' : ''}`, {
          hint: running
            ? `Commit them in the session (\`berth exec ${s.name} -- git commit -am …\`), or remove with --force: berth keeps them on refs/berth/wip/${s.name}.`
            : // Not "commit in the checkout on the host": its .git is the agent's (hooks, config), and git there would run them.
              `The session is ${s.state}: \`berth restart ${s.name}\` runs it again so you can commit in it (\`berth exec\`), or remove with --force: berth keeps them on refs/berth/wip/${s.name}.`,
          details: { id: s.id, paths: dirty },
        });
      }
    }
    // The checkout goes in the reconciler's last step (once the container is gone), with these
    // options kept on the row: a removal interrupted by a crash is finished by the next pass.
    const opts2 = { force: opts.force === true, deleteBranch: opts.deleteBranch === true };
    this.d.sessions.setDesired(s.id, 'removed', this.d.now().toISOString(), { removeOpts: opts2 });
    this.d.reconciler.enqueue(s.id);
    await waitForSession(this.d.sessions, this.d.bus, s.id, () => false, 120_000);
    if (this.d.sessions.get(s.id)) {
      throw new BerthError('ENGINE_UNAVAILABLE', `session ${s.name} is marked for removal; berthd finishes it when the engine answers`, {
        details: { id: s.id },
      });
    }
    const { kept, notes } = this.d.checkouts.takeRemoval(s.id) ?? { kept: {}, notes: [] };
    return { removed: s.id, name: s.name, kept, notes };
  }

  async merge(s: SessionRecord, strategy: 'ff' | 'merge' | 'squash', message: string | undefined, includeUncommitted: boolean): Promise<MergeResult> {
    if (!includeUncommitted) return this.d.checkouts.merge(s, strategy, message);
    const committed = await this.commitUncommitted(s);
    return { ...(await this.d.checkouts.merge(this.d.resolve(s.id), strategy, message)), committedUncommitted: committed };
  }

  /**
   * Commits what is uncommitted in a write session's checkout, as the agent would: `git add -A` and
   * `git commit` run inside its container (berthd never runs git in the agent's .git on the host).
   * Returns the new commit, or null when nothing was uncommitted.
   */
  private async commitUncommitted(s: SessionRecord): Promise<string | null> {
    if (!s.checkoutDir) throw new BerthError('NO_CHECKOUT', `session ${s.name} works in the main checkout and has no branch of its own`);
    if (!(await this.d.checkouts.dirty(s)).length) return null;
    if (s.state !== 'running' || !s.containerId) {
      throw new BerthError('SESSION_NOT_RUNNING', `session ${s.name} is ${s.state}: its uncommitted files are committed inside its container`, {
        hint: `\`berth restart ${s.name}\` runs it again, then merge with --include-uncommitted; or merge without it (they are left out).`,
        details: { id: s.id, state: s.state },
      });
    }
    const script = [
      'set -e',
      'cd "$1"',
      'git add -A',
      'git -c user.name=berth -c user.email=berth@localhost commit -q --no-verify -m "berth: uncommitted work of session $2, included in a merge"',
      'git rev-parse HEAD',
    ].join('\n');
    const r = await this.d.runtime.exec(s.containerId, ['sh', '-c', script, 'sh', '/workspace', s.name], { timeoutSec: 120, user: s.spec.user });
    if (r.exitCode !== 0) {
      throw new BerthError('GIT_FAILED', `committing the uncommitted work in session ${s.name} failed (exit ${r.exitCode}): ${(r.stderr || r.stdout).trim().slice(-500)}`, {
        details: { id: s.id },
      });
    }
    // What the container printed is the agent's to forge: only a commit id is passed on.
    const sha = r.stdout.trim().split('\n').pop() ?? '';
    return /^[0-9a-f]{40}([0-9a-f]{24})?$/.test(sha) ? sha : null;
  }
}
