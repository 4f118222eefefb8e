import type { LogLine, NetworkMode } from '@berth/client-sdk/protocol';

/**
 * The container engine as berthd sees it. Adapters (docker/, local/) implement this with berth's
 * own types only: no dockerode object crosses this boundary. Every operation is idempotent:
 * stopping a stopped container or removing a missing one succeeds.
 */
export interface EngineInfo {
  version: string;
  apiVersion: string;
}

export interface ImageInfo {
  id: string;
  tags: string[];
  sizeBytes: number;
  createdAt: string;
}

export interface ImageRecord extends ImageInfo {
  labels: Record<string, string>;
}

export interface BuildRequest {
  /** `repo:tag` to give the result. */
  tag: string;
  /** Absolute directory sent to the engine as the build context. */
  context: string;
  /** Dockerfile path relative to the context. */
  dockerfile: string;
  buildArgs: Record<string, string>;
  labels: Record<string, string>;
  /** Stage to build (multi-stage Dockerfiles with `prod` and `dev` stages). */
  target?: string;
  /** Rebuild every step instead of reusing the engine's layer cache. */
  noCache?: boolean;
}

export interface BuildProgress {
  step: number | null;
  total: number | null;
  line: string;
}

export interface EnginePort {
  /** Human-readable engine address, for status output. */
  readonly host: string;
  /** Resolves when the engine answers; rejects with the transport error otherwise (adapters bound the wait). */
  info(): Promise<EngineInfo>;
  /** OCI runtimes the engine offers (`runc`, `sysbox-runc` ...). */
  runtimes(): Promise<string[]>;
  /** The image, or null when the engine does not have it. */
  image(ref: string): Promise<ImageInfo | null>;
}

/** Everything needed to create one session's container. */
export interface ContainerSpec {
  name: string;
  image: string;
  command: string[];
  /** Final environment, secrets resolved. */
  env: Record<string, string>;
  labels: Record<string, string>;
  /** `uid:gid` the agent runs as; never root. */
  user: string;
  workdir: string;
  mounts: { source: string; target: string; readOnly: boolean; kind: 'bind' | 'volume' }[];
  memoryBytes: number;
  nanoCpus: number;
  pidsLimit: number;
  network: NetworkMode;
  /** For bridge/internal: the per-project network to join. */
  networkName: string | null;
  /**
   * The id ensureNetwork returned for `networkName`. The container is attached by it, so a name
   * that has become ambiguous (duplicate networks) can never fail the create or the start.
   */
  networkId?: string | null;
  /**
   * How the container is confined. sessions/spec.ts decides every field; an adapter applies them
   * as given and adds nothing of its own, so the stored spec shows what protects the host. (The
   * local runtime runs plain processes and cannot apply them: local mode is opted into.)
   */
  security: ContainerSecurity;
  runtime: string | null;
  /** Extra groups (the engine socket's group when AGENT_DOCKER_ACCESS=socket). */
  groupAdd: string[];
}

export interface ContainerSecurity {
  privileged: false;
  /** Capabilities dropped before `capAdd` puts the profile's few back. */
  capDrop: string[];
  capAdd: string[];
  noNewPrivileges: boolean;
  /** An init as PID 1 that reaps zombies and forwards signals. */
  init: boolean;
  readOnlyRootfs: boolean;
  /** Writable in-memory mounts (path → mount options), e.g. /tmp on a read-only root. */
  tmpfs: Record<string, string>;
  /** Per-container log cap, so an agent cannot fill the host's disk through its output. */
  logs: { maxSize: string; maxFiles: number };
}

export type ContainerStatus = 'created' | 'running' | 'paused' | 'restarting' | 'removing' | 'exited' | 'dead';

/** A container as one listing shows it: enough to tell whether its session needs a closer look. */
export type ContainerSummary = Pick<ContainerObservation, 'id' | 'name' | 'labels' | 'status'>;

/** What the engine says about one berth container. */
export interface ContainerObservation {
  id: string;
  name: string;
  labels: Record<string, string>;
  status: ContainerStatus;
  exitCode: number | null;
  oomKilled: boolean;
  startedAt: string | null;
  finishedAt: string | null;
}

export interface RuntimeEvent {
  containerId: string;
  sessionId: string | null;
  action: string;
  /** Engine time, nanoseconds since the epoch, for resubscribing with `since`. */
  timeNano: bigint;
}

/** A command to run in a running container, attached (execStream). */
export interface ExecRequest {
  cmd: string[];
  /** A terminal for the command: its output is raw and all of it `stdout`; resize applies. */
  tty: boolean;
  /** Whether the command's stdin is open for `write`; else it reads nothing. */
  stdin: boolean;
  /** `uid:gid` or name to run as (the session's user); the image's default when not given. */
  user?: string;
  env?: Record<string, string>;
  workdir?: string;
  /** The terminal size at start, with `tty`. */
  size?: TerminalSize;
}

export interface TerminalSize {
  cols: number;
  rows: number;
}

export interface ExecOutput {
  stream: 'stdout' | 'stderr';
  data: Buffer;
}

/**
 * One attached command. `output` yields its bytes as they come (iterating slower holds the command
 * back) and ends when the command closed its output; `exitCode()` then says how it ended.
 * `close()` detaches: stdin ends and the command and the processes it started get SIGHUP, as from
 * a terminal hanging up, terminal or not (best effort; a process that ignores SIGHUP runs on).
 * Every method may be called at any time, close() more than once.
 */
export interface ExecSession {
  readonly output: AsyncIterable<ExecOutput>;
  /** Writes to stdin; resolves once the command can take more. */
  write(data: Buffer): Promise<void>;
  /** Ends stdin (the command reads EOF). */
  endStdin(): void;
  resize(size: TerminalSize): Promise<void>;
  /** The exit code once `output` has ended (-1 when the runtime could not tell). */
  exitCode(): Promise<number>;
  close(): void;
}

export interface ContainerRuntime extends EnginePort {
  /** Every container carrying `labels` (all of them, running or not), each inspected. */
  list(labels: Record<string, string>): Promise<ContainerObservation[]>;
  /**
   * The same containers from one listing, without inspecting each: what the resync compares
   * with the store, so a pass costs one engine call however many containers there are.
   */
  summaries(labels: Record<string, string>): Promise<ContainerSummary[]>;
  /** One container by id or name, or null. */
  inspect(idOrName: string): Promise<ContainerObservation | null>;
  /**
   * CPU time the container has used so far, in nanoseconds (one sample; the caller compares two).
   * null when it is gone or the runtime cannot tell.
   */
  cpuTimeNs(id: string): Promise<number | null>;
  /** Creates (not starts) the container; returns its id. A name already taken by a container with the same session label is adopted. */
  create(spec: ContainerSpec): Promise<string>;
  start(id: string): Promise<void>;
  /** SIGTERM, then SIGKILL after `timeoutSec`. */
  stop(id: string, timeoutSec: number): Promise<void>;
  /** Removes the container (force); its named volumes stay unless `volumes` lists them. */
  remove(id: string, opts?: { volumes?: string[] }): Promise<void>;
  /**
   * The one network named exactly `name`, made (bridge driver, `internal`, `labels`) when there is
   * none; returns its id. A same-named network is adopted only when it carries every entry of
   * `labels` and its driver and Internal flag match; any other same-named network is never joined
   * or touched: NETWORK_CONFLICT (terminal). Duplicates of the name that match (an older berthd, a
   * crash between create and list) are resolved to one kept deterministically; the others are
   * removed once empty. The engine's create is not atomic (20.10 makes duplicates under concurrent
   * creates); the list after each create converges them, but callers should still serialise per
   * name (the reconciler does) so that only one is ever made.
   */
  ensureNetwork(name: string, opts: { internal: boolean; labels: Record<string, string> }): Promise<string>;
  ensureVolume(name: string, labels: Record<string, string>): Promise<void>;
  /**
   * Removes every network named exactly `name` (duplicates included) that carries `owner`
   * (default: dev.berth.managed=true, so a network berth did not make is never removed). Missing
   * is success; one with containers attached makes it fail.
   */
  removeNetwork(name: string, owner?: Record<string, string>): Promise<void>;
  /**
   * Opens the engine's event stream for containers carrying `labels`, replaying from `sinceNano`;
   * resolves once subscribed. The iterable ends when `signal` aborts and throws when the stream breaks.
   */
  events(labels: Record<string, string>, sinceNano: bigint | null, signal: AbortSignal): Promise<AsyncIterable<RuntimeEvent>>;
  /**
   * The container's output, each line with the engine's timestamp, in order. `since` is inclusive
   * (lines stamped exactly `since` come again: the log ingest counts them off). With `follow` the
   * iterable ends when the container stops; iterating slower holds the stream back.
   */
  logs(id: string, opts: { tail?: number; since?: string; follow?: boolean; signal?: AbortSignal }): AsyncIterable<LogLine>;
  exec(id: string, cmd: string[], opts: { timeoutSec: number; user?: string }): Promise<{ exitCode: number; stdout: string; stderr: string }>;
  /**
   * Starts `req` in the running container `id`, attached. SESSION_NOT_RUNNING when the container is
   * not running; EXEC_TTY_UNSUPPORTED when the runtime cannot give a terminal.
   */
  execStream(id: string, req: ExecRequest): Promise<ExecSession>;
  /** Images whose repo:tag matches `namePrefix`, or that carry `label`. */
  images(match: { namePrefix: string; label: string }): Promise<ImageRecord[]>;
  /** Removes an image by reference (never forced: an image a container uses stays). */
  removeImage(ref: string): Promise<void>;
  /**
   * Untagged (dangling) images carrying every entry of `labels`, leaving out any image a container
   * (running or not, whoever made it) was created from: what may be removed without touching work.
   */
  danglingImages(labels: Record<string, string>): Promise<ImageRecord[]>;
  /**
   * Builds through the engine's API with the context sent as a tar stream; reports each output line.
   * Rejects with IMAGE_BUILD_FAILED (step and last lines in details) when a step fails.
   */
  build(req: BuildRequest, onProgress: (p: BuildProgress) => void): Promise<{ id: string; steps: number | null }>;
  /** The engine's socket on this host and its group, for AGENT_DOCKER_ACCESS=socket; null when remote. */
  engineSocket(): Promise<{ path: string; gid: number | null } | null>;
}
