import type {
  Agent,
  AgentLimits,
  BridgeRequestRecord,
  ConfigChange,
  DaemonStatus,
  ExecResult,
  DefaultImagesResult,
  ImageBuildResult,
  ImageSummary,
  ImageVariant,
  LogLine,
  MergeResult,
  NetworkMode,
  Project,
  RestartPolicy,
  RemoveResult,
  Session,
  SessionDiff,
  SessionList,
  SessionMode,
  SessionState,
  SessionStatus,
  SessionUsage,
  WorktreePolicy,
} from './types.js';
import type { ScheduleMethods } from './schedules.js';
import type { TaskMethods } from './tasks.js';
import type { MaintenanceMethods } from './maintenance.js';

/**
 * Every JSON-RPC method berthd serves, once: its params (by name) and its result.
 * Server handlers and the client's methods are both typed against this map.
 */
export interface Methods extends TaskMethods, MaintenanceMethods, ScheduleMethods {
  'daemon.status': { params: Record<string, never>; result: DaemonStatus };
  /** Reads config.yaml and secrets.yaml again, as SIGHUP does. A refused file: CONFIG_INVALID naming the key; the running configuration is kept. */
  'daemon.reloadConfig': { params: Record<string, never>; result: ConfigChange };

  'projects.add': {
    params: { name: string; path?: string; gitUrl?: string; sshKeyPath?: string; branch?: string; worktrees?: WorktreePolicy };
    result: Project;
  };
  'projects.list': { params: Record<string, never>; result: Project[] };
  'projects.get': { params: { name: string }; result: Project };
  'projects.update': {
    params: { name: string; network?: NetworkMode | null; worktrees?: WorktreePolicy; defaultImage?: string | null };
    result: Project;
  };
  'projects.remove': { params: { name: string }; result: { removed: string } };

  'agents.define': {
    params: {
      name: string;
      command: string[];
      image?: string | null;
      env?: Record<string, string>;
      role?: string | null;
      readOnly?: boolean;
      limits?: AgentLimits;
      restartPolicy?: RestartPolicy;
      network?: NetworkMode | null;
      readOnlyRootfs?: boolean;
      capAdd?: string[];
      secrets?: Record<string, string>;
      budgetTokens?: number | null;
      stuckAfterSec?: number | null;
      onStuck?: 'restart' | 'notify' | 'none';
    };
    result: Agent;
  };
  'agents.list': { params: Record<string, never>; result: Agent[] };
  'agents.get': { params: { name: string }; result: Agent };
  'agents.remove': { params: { name: string }; result: { removed: string } };

  'sessions.start': {
    params: {
      project: string;
      agent: string;
      mode?: SessionMode;
      name?: string;
      command?: string[];
      env?: Record<string, string>;
      limits?: AgentLimits;
      restartPolicy?: RestartPolicy;
      /** Overrides the agent's budgetTokens for this session (null: no budget). */
      budgetTokens?: number | null;
      /** Among sessions waiting for a slot, higher starts first (default 0). */
      priority?: number;
    };
    /** Once its container runs; at once (with `queued: true`) when it waits for a slot. */
    result: Session;
  };
  'sessions.list': {
    params: {
      project?: string;
      state?: SessionState;
      /** Only sessions that run or are on their way to: pending, creating, running, stopping, or exited with a restart due. */
      active?: boolean;
      limit?: number;
      cursor?: string;
      /** Removed sessions instead (as listed when removed, with `removedAt`), kept until log retention ends; project, limit and cursor apply. */
      removed?: boolean;
    };
    result: SessionList;
  };
  'sessions.get': { params: { id: string }; result: Session };
  /**
   * `graceful`: ask the agent to finish and exit (it is never restarted by its policy), stop it
   * after `withinSec` (default 600) if it has not; returns at once. Otherwise SIGTERM, then SIGKILL
   * after `timeoutSec`; returns once stopped.
   */
  'sessions.stop': { params: { id: string; timeoutSec?: number; graceful?: boolean; withinSec?: number }; result: Session };
  'sessions.restart': { params: { id: string }; result: Session };
  /**
   * `stop: false` refuses a session whose container runs (SESSION_RUNNING), as `docker rm` does;
   * left out, a running session is stopped and removed (what SDK callers of protocol 1 got). The
   * CLI sends `stop: false` unless `berth rm --stop`.
   */
  'sessions.remove': { params: { id: string; force?: boolean; deleteBranch?: boolean; stop?: boolean }; result: RemoveResult };
  'sessions.status': { params: { id: string }; result: SessionStatus };
  'sessions.diff': { params: { id: string; stat?: boolean }; result: SessionDiff };
  /**
   * `includeUncommitted` first commits the session's uncommitted and untracked files in its
   * checkout, inside its running container (`git add -A; git commit`), so they go in too.
   */
  'sessions.merge': { params: { id: string; strategy?: 'ff' | 'merge' | 'squash'; message?: string; includeUncommitted?: boolean }; result: MergeResult };
  /**
   * Lines from berth's log store (a removed session's too, until retention ends), oldest first:
   * `since`/`until` as RFC 3339, Unix seconds or a duration ago (10m), `grep` a JavaScript regular
   * expression on the text, `tail` the last N that pass. At most LOGS_RPC_MAX_LINES lines
   * (10,000, 16 MiB of text): more is refused with LOGS_TOO_MANY_LINES, never cut; read the
   * `sessions.logs` stream for everything.
   */
  'sessions.logs': { params: { id: string; tail?: number; since?: string; until?: string; grep?: string }; result: LogLine[] };
  'sessions.exec': { params: { id: string; cmd: string[]; timeoutSec?: number }; result: ExecResult };
  /** Model usage through the session's Claude bridge; works for removed sessions (by full id). */
  'sessions.usage': { params: { id: string }; result: SessionUsage };
  /** The session's bridged requests, newest last (the audit log; never prompt contents). */
  'sessions.requests': { params: { id: string; limit?: number }; result: BridgeRequestRecord[] };

  'images.list': { params: Record<string, never>; result: ImageSummary[] };
  'images.remove': { params: { name: string }; result: { removed: string } };
  /**
   * Builds `name` from `dockerfile` (absolute; the context defaults to its directory) or from a
   * shipped stack under images/ (`stack`, or inferred from a `claude-agent-<stack>` name). The
   * variant defaults to `dev` for a `:dev` tag, else `prod`.
   */
  'images.build': {
    params: {
      name: string;
      dockerfile?: string;
      stack?: string;
      context?: string;
      buildArgs?: Record<string, string>;
      variant?: ImageVariant;
      noCache?: boolean;
    };
    result: ImageBuildResult;
  };
  /**
   * Builds the shipped images/ stacks (all, or `stacks` and what they extend) in dependency order,
   * each variant asked for. One failure does not stop the others; what extends it is skipped.
   */
  'images.buildDefaults': {
    params: { stacks?: string[]; variants?: ImageVariant[]; tag?: string; buildArgs?: Record<string, string>; noCache?: boolean };
    result: DefaultImagesResult;
  };
}

export type MethodName = keyof Methods;
export type ParamsOf<M extends MethodName> = Methods[M]['params'];
export type ResultOf<M extends MethodName> = Methods[M]['result'];

/**
 * Parameter order for by-position calls (`"params": ["web", "/home/me/projects/web"]`).
 * A by-position call maps its array onto these names; extra elements are an error.
 */
export const positionalParams: { readonly [M in MethodName]: readonly (keyof ParamsOf<M> & string)[] } = {
  'daemon.status': [],
  'daemon.reloadConfig': [],
  'projects.add': ['name', 'path', 'gitUrl', 'sshKeyPath', 'branch', 'worktrees'],
  'projects.list': [],
  'projects.get': ['name'],
  'projects.update': ['name', 'network', 'worktrees', 'defaultImage'],
  'projects.remove': ['name'],
  'agents.define': [
    'name',
    'command',
    'image',
    'env',
    'role',
    'readOnly',
    'limits',
    'restartPolicy',
    'network',
    'readOnlyRootfs',
    'capAdd',
    'secrets',
    'budgetTokens',
    'stuckAfterSec',
    'onStuck',
  ],
  'agents.list': [],
  'agents.get': ['name'],
  'agents.remove': ['name'],
  'sessions.start': ['project', 'agent', 'mode', 'name', 'command', 'env', 'limits', 'restartPolicy', 'budgetTokens', 'priority'],
  'sessions.list': ['project', 'state', 'active', 'limit', 'cursor', 'removed'],
  'sessions.get': ['id'],
  'sessions.stop': ['id', 'timeoutSec', 'graceful', 'withinSec'],
  'sessions.restart': ['id'],
  'sessions.remove': ['id', 'force', 'deleteBranch', 'stop'],
  'sessions.status': ['id'],
  'sessions.diff': ['id', 'stat'],
  'sessions.merge': ['id', 'strategy', 'message', 'includeUncommitted'],
  'sessions.logs': ['id', 'tail', 'since', 'until', 'grep'],
  'images.list': [],
  'images.remove': ['name'],
  'images.build': ['name', 'dockerfile', 'stack', 'context', 'buildArgs', 'variant', 'noCache'],
  'images.buildDefaults': ['stacks', 'variants', 'tag', 'buildArgs', 'noCache'],
  'sessions.exec': ['id', 'cmd', 'timeoutSec'],
  'sessions.usage': ['id'],
  'sessions.requests': ['id', 'limit'],
  'tasks.add': ['project', 'title', 'body', 'priority', 'labels', 'dependsOn', 'maxAttempts'],
  'tasks.list': ['project', 'state', 'limit', 'cursor'],
  'tasks.get': ['id'],
  'tasks.update': ['id', 'title', 'body', 'priority', 'labels', 'dependsOn', 'maxAttempts', 'reopen'],
  'tasks.cancel': ['id'],
  'tasks.remove': ['id'],
  'tasks.import': ['project', 'format', 'text'],
  'pools.create': ['project', 'agent', 'parallel', 'reviewer', 'autoMerge', 'untilEmpty', 'name'],
  'pools.list': ['project'],
  'pools.get': ['id'],
  'pools.scale': ['id', 'parallel'],
  'pools.stop': ['id', 'graceful'],
  'maintenance.list': [],
  'maintenance.run': ['job'],
  'maintenance.backup': ['to'],
  'schedules.add': ['name', 'project', 'agent', 'cron', 'tz', 'command', 'task', 'concurrency', 'startingDeadlineSec', 'suspended'],
  'schedules.list': ['project'],
  'schedules.get': ['name'],
  'schedules.update': ['name', 'cron', 'tz', 'agent', 'command', 'task', 'concurrency', 'startingDeadlineSec', 'suspended'],
  'schedules.remove': ['name'],
  'schedules.run': ['name'],
};

export const methodNames = Object.keys(positionalParams) as MethodName[];

/** Methods that take as long as the work they do (image builds): clients wait without a deadline. */
export const longRunningMethods: ReadonlySet<MethodName> = new Set<MethodName>([
  'images.build',
  'images.buildDefaults',
  // berthd bounds these itself (SESSION_START_TIMEOUT, the stop grace period, the removal wait): on a
  // busy machine the client waits for that answer instead of giving up first with TIMEOUT.
  'sessions.start',
  'sessions.restart',
  'sessions.stop',
  'sessions.remove',
  // A backup or an image sweep takes as long as the database or the engine makes it.
  'maintenance.run',
  'maintenance.backup',
  // A run by hand may replace the running one (stop it) before it starts its session.
  'schedules.run',
]);

/**
 * Methods that only read: sending one twice changes nothing, so a client may send it again when the
 * connection broke before the answer (CONNECTION_LOST). Everything else is sent once.
 */
export const idempotentMethods: ReadonlySet<MethodName> = new Set<MethodName>([
  'daemon.status',
  'projects.list',
  'projects.get',
  'agents.list',
  'agents.get',
  'sessions.list',
  'sessions.get',
  'sessions.logs',
  'sessions.status',
  'sessions.diff',
  'sessions.usage',
  'sessions.requests',
  'images.list',
  'tasks.list',
  'tasks.get',
  'pools.list',
  'pools.get',
  'maintenance.list',
  'schedules.list',
  'schedules.get',
]);
