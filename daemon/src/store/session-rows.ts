import type { RestartPolicy, Session, SessionActivity, SessionDesired, SessionMerge, SessionMode, SessionState, UsageTotals } from '@berth/client-sdk/protocol';
import type { SessionSpec } from '../shared/session-spec.js';

/** How a session is kept: the record, its table row, and the mappings between them and the public view. */

/** A session as the daemon keeps it: the public view plus what the reconciler needs. */
export interface SessionRecord {
  id: string;
  name: string;
  project: string;
  agent: string;
  mode: SessionMode;
  seq: number;
  containerName: string;
  spec: SessionSpec;
  specHash: string;
  restartPolicy: RestartPolicy;
  desired: SessionDesired;
  generation: number;
  recreate: boolean;
  state: SessionState;
  containerId: string | null;
  restartCount: number;
  crashCount: number;
  nextRestartAt: string | null;
  handledFinish: string | null;
  errorCode: string | null;
  errorMessage: string | null;
  exitCode: number | null;
  /** The session's own clone, when it has one. */
  checkoutDir: string | null;
  /**
   * `creating` from the moment the row exists until the clone is complete: the reconciler makes no
   * container for it meanwhile. `ready` once it is. NULL for sessions with no checkout of their own.
   */
  checkoutState: CheckoutState | null;
  /** Device and inode of the checkout directory berth made (removal checks them). */
  checkoutIdentity: { dev: number; ino: number } | null;
  /** How the user asked to remove it (set with desired = removed; the last reconcile step uses it). */
  removeOpts: { force: boolean; deleteBranch: boolean } | null;
  branch: string | null;
  base: string | null;
  baseSha: string | null;
  /** Tokens the session may use through its bridge; null: no budget. */
  budgetTokens: number | null;
  /** What the agent reported last through its bridge. */
  activity: SessionActivity | null;
  /** A graceful stop was asked for: the agent may finish until then (desired is already `stopped`). */
  gracefulDeadline: string | null;
  /** Waiting for a slot (BERTH_MAX_RUNNING) since then; the reconciler makes no container meanwhile. */
  queuedAt: string | null;
  /** Higher first among the sessions waiting for a slot. */
  priority: number;
  /** Restarts because the agent was stuck, in a row (reset once it works again). */
  stuckRestarts: number;
  /** The last merge of its branch by berth. */
  merged: SessionMerge | null;
  createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
  updatedAt: string;
}

export type CheckoutState = 'creating' | 'ready';

/** Fields the reconciler writes after observing or acting (never desired state). */
export type ObservedPatch = Partial<
  Pick<
    SessionRecord,
    | 'state'
    | 'containerId'
    | 'restartCount'
    | 'crashCount'
    | 'nextRestartAt'
    | 'handledFinish'
    | 'errorCode'
    | 'errorMessage'
    | 'exitCode'
    | 'startedAt'
    | 'finishedAt'
    | 'recreate'
  >
>;

export interface Row {
  id: string;
  name: string;
  project: string;
  agent: string;
  mode: string;
  seq: number;
  container_name: string;
  spec: string;
  spec_hash: string;
  restart_policy: string;
  desired: string;
  generation: number;
  recreate: number;
  state: string;
  container_id: string | null;
  restart_count: number;
  crash_count: number;
  next_restart_at: string | null;
  handled_finish: string | null;
  error_code: string | null;
  error_message: string | null;
  exit_code: number | null;
  checkout_dir: string | null;
  checkout_state: string | null;
  checkout_dev: number | null;
  checkout_ino: number | null;
  remove_opts: string | null;
  branch: string | null;
  base: string | null;
  base_sha: string | null;
  budget_tokens: number | null;
  activity: string | null;
  graceful_deadline: string | null;
  queued_at: string | null;
  priority: number;
  stuck_restarts: number;
  merged: string | null;
  created_at: string;
  started_at: string | null;
  finished_at: string | null;
  updated_at: string;
}

export const toRecord = (r: Row): SessionRecord => ({
  id: r.id,
  name: r.name,
  project: r.project,
  agent: r.agent,
  mode: r.mode as SessionMode,
  seq: r.seq,
  containerName: r.container_name,
  spec: JSON.parse(r.spec) as SessionSpec,
  specHash: r.spec_hash,
  restartPolicy: r.restart_policy as RestartPolicy,
  desired: r.desired as SessionDesired,
  generation: r.generation,
  recreate: r.recreate === 1,
  state: r.state as SessionState,
  containerId: r.container_id,
  restartCount: r.restart_count,
  crashCount: r.crash_count,
  nextRestartAt: r.next_restart_at,
  handledFinish: r.handled_finish,
  errorCode: r.error_code,
  errorMessage: r.error_message,
  exitCode: r.exit_code,
  checkoutDir: r.checkout_dir,
  checkoutState: r.checkout_state as CheckoutState | null,
  checkoutIdentity: r.checkout_dev !== null && r.checkout_ino !== null ? { dev: r.checkout_dev, ino: r.checkout_ino } : null,
  removeOpts: r.remove_opts ? (JSON.parse(r.remove_opts) as SessionRecord['removeOpts']) : null,
  branch: r.branch,
  base: r.base,
  baseSha: r.base_sha,
  budgetTokens: r.budget_tokens,
  activity: r.activity ? (JSON.parse(r.activity) as SessionActivity) : null,
  gracefulDeadline: r.graceful_deadline,
  queuedAt: r.queued_at,
  priority: r.priority,
  stuckRestarts: r.stuck_restarts,
  merged: r.merged ? (JSON.parse(r.merged) as SessionMerge) : null,
  createdAt: r.created_at,
  startedAt: r.started_at,
  finishedAt: r.finished_at,
  updatedAt: r.updated_at,
});

/** The public view of a session: no spec internals, no secrets. `usage` comes from the usage table. */
export function toSession(r: SessionRecord, usage: UsageTotals | null): Session {
  return {
    id: r.id,
    name: r.name,
    project: r.project,
    agent: r.agent,
    mode: r.mode,
    desired: r.desired,
    state: r.state,
    containerId: r.containerId,
    containerName: r.containerName,
    image: r.spec.image,
    command: r.spec.command,
    restartPolicy: r.restartPolicy,
    restartCount: r.restartCount,
    nextRestartAt: r.nextRestartAt,
    error: r.errorCode ? { code: r.errorCode, message: r.errorMessage ?? '' } : null,
    exitCode: r.exitCode,
    checkout: r.checkoutDir && r.branch && r.base ? { dir: r.checkoutDir, branch: r.branch, base: r.base } : null,
    createdAt: r.createdAt,
    startedAt: r.startedAt,
    finishedAt: r.finishedAt,
    usage,
    activity: r.activity,
    budgetTokens: r.budgetTokens,
    gracefulStop: r.gracefulDeadline && r.desired === 'stopped' && (r.state === 'running' || r.state === 'stopping') ? { deadline: r.gracefulDeadline } : null,
    queued: r.queuedAt !== null,
    merged: r.merged,
  };
}

/**
 * Usage totals (UsageTotals) of the rows of session_usage in scope, as SQLite writes them. The cost
 * is kept in nano-dollars (integers, so sums are exact).
 */
export const USAGE_JSON = `json_object('requests', sum(requests), 'inputTokens', sum(input_tokens), 'outputTokens', sum(output_tokens),
  'cacheReadTokens', sum(cache_read_tokens), 'cacheCreationTokens', sum(cache_creation_tokens), 'costUsd', sum(cost_nanos) / 1e9)`;

/**
 * A list row as SQLite writes it: the public view (what toSession makes of the record) as one JSON
 * text per row, image and command read out of the spec. A page is then a join of texts: better-sqlite3
 * hands over one string per row instead of two dozen values to be made into an object and
 * stringified again, which was most of the cost of a `sessions.list` (see bench/scale).
 * Kept equal to toSession by a test in store.test.ts.
 */
export const LISTED_JSON = `json_object(
  'id', id, 'name', name, 'project', project, 'agent', agent, 'mode', mode, 'desired', desired, 'state', state,
  'containerId', container_id, 'containerName', container_name, 'image', spec ->> '$.image', 'command', spec -> '$.command',
  'restartPolicy', restart_policy, 'restartCount', restart_count, 'nextRestartAt', next_restart_at,
  'error', CASE WHEN coalesce(error_code, '') = '' THEN NULL ELSE json_object('code', error_code, 'message', coalesce(error_message, '')) END,
  'exitCode', exit_code,
  'checkout', CASE WHEN coalesce(checkout_dir, '') = '' OR coalesce(branch, '') = '' OR coalesce(base, '') = '' THEN NULL
    ELSE json_object('dir', checkout_dir, 'branch', branch, 'base', base) END,
  'createdAt', created_at, 'startedAt', started_at, 'finishedAt', finished_at,
  'usage', (SELECT ${USAGE_JSON} FROM session_usage WHERE session_id = sessions.id HAVING count(*) > 0),
  'activity', json(activity), 'budgetTokens', budget_tokens,
  'gracefulStop', CASE WHEN graceful_deadline IS NOT NULL AND desired = 'stopped' AND state IN ('running', 'stopping')
    THEN json_object('deadline', graceful_deadline) END,
  'queued', json(CASE WHEN queued_at IS NULL THEN 'false' ELSE 'true' END),
  'merged', json(merged))`;

/** A row of a page: where it sits in creation order (for the cursor), and its public view as JSON text. */
export type ListedRow = [createdAt: string, id: string, json: string];

export const COLUMN: Record<keyof ObservedPatch, string> = {
  state: 'state',
  containerId: 'container_id',
  restartCount: 'restart_count',
  crashCount: 'crash_count',
  nextRestartAt: 'next_restart_at',
  handledFinish: 'handled_finish',
  errorCode: 'error_code',
  errorMessage: 'error_message',
  exitCode: 'exit_code',
  startedAt: 'started_at',
  finishedAt: 'finished_at',
  recreate: 'recreate',
};
