/**
 * Tasks and pools: a project's backlog, claimed atomically by agents under a lease, and pools of
 * sessions that work through it (one write session per task, on branch `berth/task-<id>`).
 */

export type TaskState = 'open' | 'claimed' | 'review' | 'done' | 'failed' | 'cancelled';
export const TASK_STATES = ['open', 'claimed', 'review', 'done', 'failed', 'cancelled'] as const satisfies readonly TaskState[];

/** Longest task body (bytes of UTF-8): it travels in an environment variable and the agent's prompt. */
export const MAX_TASK_BODY = 64 * 1024;
export const MAX_TASK_TITLE = 500;
/** Largest task file berthd reads (a watched `.berth/tasks.yaml`, `berth task import`). */
export const MAX_TASK_FILE = 1024 * 1024;
/** Longest summary, failure reason or review note an agent may send. */
export const MAX_TASK_NOTE = 16 * 1024;
/** Lease of a claim unless the claimer asks for another (seconds). */
export const DEFAULT_TASK_LEASE_SEC = 600;
export const DEFAULT_TASK_MAX_ATTEMPTS = 3;

export interface TaskClaim {
  /** The session holding the task (its id and name). */
  session: string;
  sessionName: string;
  /** The task goes back to `open` (or `failed`) when this passes without a heartbeat. */
  leaseUntil: string;
  /** Which attempt this is (1 for the first claim). */
  attempt: number;
}

export interface TaskResult {
  /** The branch the work is on (`berth/task-<id>` for pool sessions), null when the session had none. */
  branch: string | null;
  /** The branch tip berth imported once the session ended, null until then. */
  commit: string | null;
  summary: string;
  /** The squash commit on the base when berth merged it (auto-merge), else null. */
  merged: string | null;
}

/** What ended an attempt or sent the task back: kept in order, shown to the next attempt. */
export interface TaskNote {
  at: string;
  attempt: number;
  session: string | null;
  kind: 'expired' | 'stuck' | 'failed' | 'released' | 'exited' | 'changes' | 'conflict' | 'unmerged' | 'reopened';
  text: string;
}

export interface Task {
  id: number;
  project: string;
  /** The key of a task that came from a file (`.berth/tasks.yaml`, `berth task import`), else null. */
  key: string | null;
  title: string;
  body: string;
  /** Higher first; ties in order of creation. */
  priority: number;
  labels: string[];
  /** Claimed only once every one of these is `done`. */
  dependsOn: number[];
  state: TaskState;
  claim: TaskClaim | null;
  attempts: number;
  maxAttempts: number;
  result: TaskResult | null;
  notes: TaskNote[];
  /** The pool working on it, if any. */
  pool: string | null;
  createdAt: string;
  updatedAt: string;
}

export interface TaskList {
  items: Task[];
  /** Pass as `cursor` for the next page; null on the last one. */
  nextCursor: string | null;
}

export interface TaskInput {
  title: string;
  body?: string;
  priority?: number;
  labels?: string[];
  /** Ids of tasks in the same project. */
  dependsOn?: number[];
  maxAttempts?: number;
}

/** One entry of a task file (YAML, JSON or CSV): `key` names it, `dependsOn` names other keys. */
export interface TaskFileEntry {
  key: string;
  title: string;
  body?: string;
  priority?: number;
  labels?: string[];
  dependsOn?: string[];
  maxAttempts?: number;
}

export interface TaskImportResult {
  added: number;
  updated: number;
  unchanged: number;
  tasks: Task[];
}

export type PoolState = 'running' | 'draining' | 'stopped' | 'done';

export interface PoolSessionRef {
  id: string;
  name: string;
  role: 'worker' | 'reviewer';
  task: number;
  state: string;
}

export interface Pool {
  id: string;
  project: string;
  agent: string;
  parallel: number;
  reviewer: string | null;
  autoMerge: boolean;
  /** Stop (state `done`) once no task is open, claimed or in review. */
  untilEmpty: boolean;
  state: PoolState;
  createdAt: string;
  updatedAt: string;
  /** Tasks of the project by state. */
  tasks: Record<TaskState, number>;
  sessions: PoolSessionRef[];
  /** Tasks this pool finished (done) and the rate since it started. */
  finished: number;
  perHour: number;
  /** Model tokens used by the pool's sessions (input + output, all models). */
  tokens: number;
}

/** JSON-RPC methods for people (the `berth` CLI, the SDK). */
export interface TaskMethods {
  'tasks.add': { params: TaskInput & { project: string }; result: Task };
  'tasks.list': { params: { project?: string; state?: TaskState; limit?: number; cursor?: string }; result: TaskList };
  'tasks.get': { params: { id: number }; result: Task };
  'tasks.update': {
    params: { id: number; title?: string; body?: string; priority?: number; labels?: string[]; dependsOn?: number[]; maxAttempts?: number; reopen?: boolean };
    result: Task;
  };
  /** Cancels an open or claimed task (the holder's next call gets TASK_LEASE_LOST). */
  'tasks.cancel': { params: { id: number }; result: Task };
  'tasks.remove': { params: { id: number }; result: { removed: number } };
  /** Adds or updates tasks by key from a file's text (`format` as the file's extension says). */
  'tasks.import': { params: { project: string; format: 'yaml' | 'json' | 'csv'; text: string }; result: TaskImportResult };

  'pools.create': {
    params: { project: string; agent: string; parallel: number; reviewer?: string; autoMerge?: boolean; untilEmpty?: boolean; name?: string };
    result: Pool;
  };
  'pools.list': { params: { project?: string }; result: Pool[] };
  'pools.get': { params: { id: string }; result: Pool };
  'pools.scale': { params: { id: string; parallel: number }; result: Pool };
  /** Stops the pool: its sessions now (their tasks go back to open), or with `graceful` once they finish. */
  'pools.stop': { params: { id: string; graceful?: boolean }; result: Pool };
}

/**
 * What an agent may call about tasks, on its own bridge only (POST /rpc on the bridge socket): the
 * socket is the session's identity, and a session touches only the task it holds.
 */
export interface BridgeTaskMethods {
  /** The task this session holds, or else the highest-priority open task whose dependencies are done; null when none is open. */
  'tasks.claim': { params: { leaseSec?: number }; result: { task: Task | null } };
  'tasks.heartbeat': { params: { leaseSec?: number }; result: { task: Task } };
  'tasks.complete': { params: { summary: string }; result: { task: Task } };
  'tasks.fail': { params: { reason: string }; result: { task: Task } };
  'tasks.release': { params: { reason?: string }; result: { task: Task } };
  /** A reviewer session's decision on the task it reviews. */
  'tasks.review': { params: { decision: 'approve' | 'changes'; notes?: string }; result: { task: Task } };
}

/**
 * Where a pool hands a task to the session it starts for it (and a reviewer its review). A session
 * that claims through its bridge gets the task in the answer, and again from tasks.claim.
 */
export const TASK_FILE_IN_CONTAINER = '/host/task.json';
export const TASK_ID_ENV = 'BERTH_TASK_ID';
