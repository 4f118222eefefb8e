/** Domain types shared by berthd and its clients. Plain data: everything here crosses the socket as JSON. */

/** `[a-z0-9][a-z0-9-]{0,62}`: project, agent and (later) session names. */
export const NAME_PATTERN = /^[a-z0-9][a-z0-9-]{0,62}$/;

export interface Project {
  name: string;
  /** Absolute, symlink-free path of the repository's top directory. */
  path: string;
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
  createdAt: string;
  updatedAt: string;
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
}

export interface DaemonStatus {
  version: string;
  pid: number;
  startedAt: string;
  uptimeSec: number;
  socket: string;
  config: ConfigSummary;
  engine: EngineStatus;
  health: HealthReport;
}

/** One line of `GET /events`. `seq` grows by one per event within a daemon's lifetime. */
export type BerthEvent =
  | EventOf<'daemon.started', { version: string; pid: number }>
  | EventOf<'daemon.stopping', { reason: string }>
  | EventOf<'daemon.health', { status: 'ok' | 'fail'; previous: 'ok' | 'fail' | null; failing: string[] }>
  | EventOf<'engine.available', { version: string; apiVersion: string }>
  | EventOf<'engine.unavailable', { error: string; nextRetryAt: string }>
  | EventOf<'project.added', { project: Project }>
  | EventOf<'project.removed', { name: string }>
  | EventOf<'agent.defined', { agent: Agent; created: boolean }>
  | EventOf<'agent.removed', { name: string }>;

export interface EventOf<T extends string, D> {
  seq: number;
  ts: string;
  type: T;
  data: D;
}

export type BerthEventType = BerthEvent['type'];
