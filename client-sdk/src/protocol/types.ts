import type { Pool, Task, TaskNote } from './tasks.js';
import type { DiskUse, MaintenanceJobStatus, MaintenanceRun } from './maintenance.js';
import type { Schedule, ScheduleRun } from './schedules.js';
/** Domain types shared by berthd and its clients. Plain data: everything here crosses the socket as JSON. */

/** `[a-z0-9][a-z0-9-]{0,62}`: project, agent and (later) session names. */
export const NAME_PATTERN = /^[a-z0-9][a-z0-9-]{0,62}$/;

export type NetworkMode = 'bridge' | 'internal' | 'none';
export const RESTART_POLICIES = ['never', 'on-failure', 'always'] as const;
export type RestartPolicy = (typeof RESTART_POLICIES)[number];

export type WorktreePolicy = 'always' | 'when-shared';

export interface Project {
  name: string;
  /** Absolute, symlink-free path of the repository's main checkout. */
  path: string;
  /** For projects cloned by berthd: where from (path is then `$BERTH_HOME/repos/<name>`). */
  gitUrl: string | null;
  /** Branch write sessions start from; null: whatever the main checkout has checked out. */
  branch: string | null;
  /** Private key for the git URL (ssh). */
  sshKeyPath: string | null;
  /**
   * `always` (default): every write session gets its own checkout and branch. `when-shared`: the
   * only active write session works in the main checkout itself; later ones get their own.
   */
  worktrees: WorktreePolicy;
  /** Network for this project's sessions unless the agent names one; null: `bridge`. */
  network: NetworkMode | null;
  /** Image every session of this project runs, whatever its agent names; null: the agent's. */
  defaultImage: string | null;
  createdAt: string;
  updatedAt: string;
}

export interface AgentLimits {
  /** Memory, as the docker CLI writes it: `512m`, `4g`. */
  memory?: string;
  /** CPUs, fractional allowed: `0.5`, `2`. */
  cpus?: number;
  /** Maximum number of processes. */
  pids?: number;
}

export type AgentRole = string;

export interface Agent {
  name: string;
  /** Image to run; null means the project's or the daemon's default. */
  image: string | null;
  /** argv of the agent process. */
  command: string[];
  /** Environment the agent is given; nothing else from the host enters its container. */
  env: Record<string, string>;
  role: AgentRole | null;
  /** Read-only agents get read sessions (the main checkout, mounted read-only). */
  readOnly: boolean;
  limits: AgentLimits;
  /** What to do when the agent exits: default `on-failure` (exit 0 means done). */
  restartPolicy: RestartPolicy;
  /** null: the project's setting, else `bridge`. */
  network: NetworkMode | null;
  /** Read-only root filesystem with a tmpfs /tmp. */
  readOnlyRootfs: boolean;
  /** Linux capabilities added back after `CapDrop: ALL` (none by default). */
  capAdd: string[];
  /** Environment variable name → secret name in $BERTH_HOME/secrets.yaml. Values never leave berthd. */
  secrets: Record<string, string>;
  /**
   * Model tokens (input, output, cache read and cache creation together) each session of this agent
   * may use through its Claude bridge; null: no budget.
   */
  budgetTokens: number | null;
  /** A session with no output, file change, hook or CPU for this long is `stuck`; null: AGENT_STUCK_TIMEOUT_MINUTES. */
  stuckAfterSec: number | null;
  /** What berth does with a stuck session: restart it (3 in a row at most, then it only notifies), notify, or nothing. */
  onStuck: OnStuck;
  createdAt: string;
  updatedAt: string;
}

/** Model usage through a session's Claude bridge, as the upstream reported it. */
export interface UsageTotals {
  requests: number;
  inputTokens: number;
  outputTokens: number;
  cacheReadTokens: number;
  cacheCreationTokens: number;
  /** Estimated from list prices per model (see README); the upstream's invoice is what counts. */
  costUsd: number;
}

export interface SessionUsage extends UsageTotals {
  id: string;
  /** The session's budget in tokens (all four kinds together), null: none. */
  budgetTokens: number | null;
  byModel: Record<string, UsageTotals>;
}

/** One bridged request, as the audit log keeps it (never the prompt or the answer). */
export interface BridgeRequestRecord {
  ts: string;
  session: string;
  method: string;
  path: string;
  model: string | null;
  status: number;
  /** Why berth refused or failed it (its error code), when it did. */
  error: string | null;
  inputTokens: number;
  outputTokens: number;
  cacheReadTokens: number;
  cacheCreationTokens: number;
  durationMs: number;
  /** Time spent waiting for a slot (BERTH_MODEL_MAX_INFLIGHT). */
  queuedMs: number;
}

/**
 * What the agent is doing, as far as berth knows: from Claude Code's hooks through the bridge.
 * `working`: a turn is under way; `waiting-input`: it asks for permission or input;
 * `idle`: its turn ended; `starting`: no signal yet.
 */
export type ActivityState = 'starting' | 'working' | 'waiting-input' | 'idle' | 'stuck' | 'exited';

export interface SessionActivity {
  state: ActivityState;
  since: string;
  /** What said so: the hook (`hook:Notification`) and its message, if any. */
  reason: string | null;
  /** The last signs of work berth saw (null: none yet). */
  lastOutputAt?: string | null;
  lastFileChangeAt?: string | null;
  lastHookAt?: string | null;
}

export type OnStuck = 'restart' | 'notify' | 'none';

export type SessionMode = 'write' | 'read';
export type SessionDesired = 'running' | 'stopped' | 'removed';
export const SESSION_STATES = ['pending', 'creating', 'running', 'stopping', 'stopped', 'exited', 'failed', 'removed'] as const;
export type SessionState = (typeof SESSION_STATES)[number];

/** One agent running against one project, in its own container. */
export interface Session {
  /** 12 hex digits; any unique prefix of 4 or more also addresses the session, as does its name. */
  id: string;
  name: string;
  project: string;
  agent: string;
  mode: SessionMode;
  desired: SessionDesired;
  state: SessionState;
  containerId: string | null;
  containerName: string;
  image: string;
  command: string[];
  restartPolicy: RestartPolicy;
  /** Restarts berth made after the agent exited. */
  restartCount: number;
  /** When the next restart is due while a crash-looping agent backs off. */
  nextRestartAt: string | null;
  error: { code: string; message: string } | null;
  exitCode: number | null;
  /** A write session's own checkout; null for read sessions and for one sharing the main checkout. */
  checkout: { dir: string; branch: string; base: string } | null;
  createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
  /** Model usage through the Claude bridge so far; null before the first request. */
  usage: UsageTotals | null;
  /** null until the agent reports through the bridge. */
  activity: SessionActivity | null;
  /** This session's token budget (the agent's unless the start overrode it). */
  budgetTokens: number | null;
  /**
   * A graceful stop in progress: the agent was asked to finish its current unit of work and exit
   * (`/host/stop-requested`, `stopRequested` in `bridge.hello`); berth stops it at `deadline`.
   */
  gracefulStop: { deadline: string } | null;
  /** Waiting for a slot (BERTH_MAX_RUNNING): `pending` until a running session ends; starts by itself. */
  queued: boolean;
  /** The last merge of its branch by `berth merge` (removal treats a squash of an unmoved tip as merged). */
  merged: SessionMerge | null;
  /** Only in `sessions.list {removed: true}`: when it was removed. */
  removedAt?: string;
}

export interface SessionMerge {
  strategy: 'ff' | 'merge' | 'squash';
  base: string;
  /** The base branch's tip the merge made. */
  commit: string;
  /** The session branch's tip that was merged. */
  branchTip: string;
  at: string;
}

export interface SessionList {
  items: Session[];
  /** Pass as `cursor` for the next page; null on the last page. */
  nextCursor: string | null;
}

export interface SessionStatus {
  /** The session branch (`berth/<name>`), or the main checkout's branch for read/shared sessions. */
  branch: string | null;
  base: string | null;
  /** Commits on the branch that the base lacks, and the reverse. */
  ahead: number;
  behind: number;
  /** Uncommitted changes, as `git status --porcelain` letters (`M`, `A`, `D`, `??` ...). */
  dirty: { path: string; status: string }[];
  lastCommit: { sha: string; subject: string; author: string; date: string } | null;
  /** The branch tip the project has as `berth/<name>` (null for read/shared sessions or before any import). */
  importedTip?: string | null;
  /** True while the checkout's branch tip is not yet in the project. */
  pendingImport?: boolean;
}

export interface SessionDiff {
  base: string;
  branch: string;
  /** Unified diff (or `--stat` output) of the checkout's files against the base. */
  diff: string;
  /** The diff was cut at the size cap. */
  truncated: boolean;
}

export interface MergeResult {
  strategy: 'ff' | 'merge' | 'squash';
  base: string;
  branch: string;
  /** The base branch's new tip. */
  commit: string;
  /** The session branch's tip that was merged. */
  branchTip: string;
  /** Uncommitted and untracked files in the session's checkout (the first 1000): not in the merge (commit them to include them). */
  leftOut: string[];
  /** With includeUncommitted: the commit berth made in the session of what was uncommitted (null when nothing was). */
  committedUncommitted?: string | null;
}

export interface RemoveResult {
  removed: string;
  name: string;
  /** What berth kept of the session's work, and how to get it back. */
  kept: { branch?: string; wip?: string; archive?: string };
  notes: string[];
}

export interface ImageSummary {
  /** `repo:tag`. */
  name: string;
  /** The tag part of `name` (null for an untagged image listed by id). */
  tag: string | null;
  id: string;
  stack: string | null;
  variant: string | null;
  sizeBytes: number;
  createdAt: string;
  /** Referred to (by an agent, a project, the default, a session) but not on the engine: id '', size 0. */
  missing?: boolean;
  usedBy: { agents: string[]; projects: string[]; sessions: string[] };
}

export interface ImageBuildProgress {
  name: string;
  /** `Step n/m` of the Dockerfile, when the engine says. */
  step: number | null;
  total: number | null;
  line: string;
}

export type ImageVariant = 'prod' | 'dev';

export interface ImageBuildResult {
  name: string;
  id: string;
  steps: number | null;
}

/** One image of images.buildDefaults. */
export interface DefaultImageOutcome {
  stack: string;
  variant: ImageVariant;
  name: string;
  /** `skipped`: a stack it extends failed. */
  status: 'built' | 'failed' | 'skipped';
  id: string | null;
  seconds: number | null;
  /** Why it failed or was skipped (with the failed step's code and details when it failed). */
  error: { code: string; message: string; details?: Record<string, unknown> } | null;
}

export interface DefaultImagesResult {
  /** In build order. */
  images: DefaultImageOutcome[];
  built: number;
  failed: number;
  skipped: number;
}

export interface LogLine {
  ts: string;
  stream: 'stdout' | 'stderr' | 'berth';
  line: string;
  partial?: true;
  /** Lines berth could not store; `null` when how many is not known (rotated out of the engine's log). */
  dropped?: number | null;
  event?: string;
}

export interface ExecResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

export interface EngineStatus {
  /** Whether the Docker engine answered on the last check. */
  available: boolean;
  /** The address berthd talks to (unix socket path or tcp URL). */
  host: string;
  version?: string;
  apiVersion?: string;
  /** Why the last check failed. */
  error?: string;
  lastCheckedAt?: string;
  /** When berthd will try again while the engine is unavailable. */
  nextRetryAt?: string;
}

export interface HealthCheck {
  name: string;
  ok: boolean;
  /** What was found: versions, image id, error text. */
  detail: string;
  /** What to do about it, when failing. */
  remediation?: string;
  /** A failing warning is shown in the report but leaves `status` ok (an invalid config edit berthd did not apply). */
  warning?: boolean;
}

export interface HealthReport {
  status: 'ok' | 'fail';
  checks: HealthCheck[];
}

export interface ConfigSummary {
  home: string;
  socket: string;
  agentMode: 'docker' | 'local';
  agentDefaultImage: string;
  agentMemoryLimit: string;
  agentCpuLimit: number;
  agentPidsLimit: number;
  agentDockerAccess: 'socket' | null;
  agentRuntime: string | null;
  projectsRoot: string;
  dockerHost: string | null;
  logLevel: string;
  resyncSec: number;
  orphanGraceSec: number;
  gitTimeoutSec: number;
  imagesDir: string;
  buildCaCerts: string;
}

export interface DaemonStatus {
  version: string;
  pid: number;
  /** This daemon's identity on the engine: containers it owns carry it in `dev.berth.instance`. */
  instanceId: string;
  startedAt: string;
  uptimeSec: number;
  socket: string;
  config: ConfigSummary;
  engine: EngineStatus;
  health: HealthReport;
  /** Each maintenance job's last and next run. */
  maintenance: MaintenanceJobStatus[];
  /** `$BERTH_HOME` by kind; null until first measured (moments after start). */
  disk: DiskUse | null;
}

/** What a notification is about; webhooks may subscribe to some of them (`events` in `notifyWebhooks`). */
export const notificationKinds = ['waiting-input', 'stuck', 'exited', 'failed', 'budget'] as const;
export type NotificationKind = (typeof notificationKinds)[number];

/**
 * Something about a session a person should look at: it asks for input, is stuck, exited with a
 * non-zero code, failed, or used its token budget. The `notification` event on `/events`, the body
 * of each webhook POST, and a desktop notification. `message` may quote the agent: print it escaped.
 */
export interface Notification {
  /** Unique per notification: a webhook retried after a lost answer sends the same id. */
  id: string;
  kind: NotificationKind;
  session: { id: string; name: string; project: string; agent: string };
  message: string;
  ts: string;
}

/**
 * A reload of config.yaml / secrets.yaml (file watch, SIGHUP) that was valid. `keys`: the changed keys
 * applied at once; `restartNeeded`: changed keys that take effect only when berthd restarts (the
 * running value still governs); `secrets`: names of secrets added, changed or removed (never values).
 */
export interface ConfigChange {
  trigger: string;
  keys: string[];
  restartNeeded: string[];
  secrets: string[];
}

/** A reload that was refused: the running configuration is kept. `key` is the config key, or the file when it cannot be read or parsed. */
export interface ConfigProblem {
  trigger: string;
  key: string;
  file: string;
  message: string;
}

/** One line of `GET /events`. `seq` grows by one per event within a daemon's lifetime. */
export type BerthEvent =
  | EventOf<'daemon.started', { version: string; pid: number }>
  | EventOf<'daemon.stopping', { reason: string }>
  | EventOf<'daemon.health', { status: 'ok' | 'fail'; previous: 'ok' | 'fail' | null; failing: string[] }>
  | EventOf<'config.changed', ConfigChange>
  | EventOf<'config.invalid', ConfigProblem>
  | EventOf<'engine.available', { version: string; apiVersion: string }>
  | EventOf<'engine.unavailable', { error: string; nextRetryAt: string }>
  | EventOf<'project.added', { project: Project }>
  | EventOf<'project.removed', { name: string }>
  | EventOf<'agent.defined', { agent: Agent; created: boolean }>
  | EventOf<'agent.removed', { name: string }>
  | EventOf<'session.created', { session: Session }>
  | EventOf<'session.state', { session: Session; previous: SessionState }>
  | EventOf<'session.removed', { id: string; name: string }>
  | EventOf<'session.imported', { id: string; name: string; branch: string; tip: string }>
  | EventOf<'session.usage', { id: string; name: string; model: string | null; usage: UsageTotals }>
  | EventOf<'session.activity', { id: string; name: string; activity: SessionActivity; previous: ActivityState | null }>
  | EventOf<'session.budget', { id: string; name: string; code: 'BUDGET_EXCEEDED'; budgetTokens: number; usedTokens: number }>
  | EventOf<'notification', Notification>
  | EventOf<'image.build', ImageBuildProgress>
  | EventOf<'image.built', ImageBuildResult>
  | EventOf<'image.removed', { name: string }>
  | EventOf<'task.added', { task: Task }>
  | EventOf<'task.updated', { task: Task }>
  | EventOf<'task.claimed', { task: Task; session: { id: string; name: string } }>
  | EventOf<'task.completed', { task: Task; session: { id: string; name: string } }>
  | EventOf<'task.released', { task: Task; session: { id: string; name: string } | null; reason: TaskNote['kind']; text: string }>
  | EventOf<'task.reviewed', { task: Task; decision: 'approve' | 'changes' }>
  | EventOf<'task.merged', { task: Task; commit: string }>
  | EventOf<'task.failed', { task: Task }>
  | EventOf<'task.removed', { id: number; project: string }>
  | EventOf<'pool.created', { pool: Pool }>
  | EventOf<'pool.updated', { pool: Pool }>
  | EventOf<'pool.stopped', { pool: Pool }>
  | EventOf<'task.file', { project: string; file: string; ok: boolean; error: string | null; added: number; updated: number }>
  | EventOf<'maintenance.run', MaintenanceRun>
  | EventOf<'schedule.added', { schedule: Schedule }>
  | EventOf<'schedule.updated', { schedule: Schedule }>
  | EventOf<'schedule.removed', { name: string }>
  | EventOf<'schedule.run', { schedule: string; run: ScheduleRun }>;

export interface EventOf<T extends string, D> {
  seq: number;
  ts: string;
  type: T;
  data: D;
}

export type BerthEventType = BerthEvent['type'];
