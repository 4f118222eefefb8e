import { createHash } from 'node:crypto';
import { BRIDGE_DIR_IN_CONTAINER, BRIDGE_SOCKET_ENV, BRIDGE_SOCKET_IN_CONTAINER, type Agent, type AgentLimits, type Project, type SessionMode } from '@berth/client-sdk/protocol';
import { parseMemory, type Config } from '../config/index.js';
import { LABELS, agentVolumeName, networkName } from '../runtime/labels.js';
import type { ContainerSpec } from '../runtime/port.js';
import type { SessionSpec } from '../shared/session-spec.js';

export type { SessionSpec };

/**
 * What resolveSpec combines into a SessionSpec. A daemon restart or a changed profile never
 * changes a running session's spec; `sessions.restart` re-resolves it.
 */
export interface SpecInput {
  agent: Agent;
  /** The image, resolved by the caller (project default > agent > devcontainer > daemon default). */
  image: string;
  project: Project;
  config: Config;
  mode: SessionMode;
  owner: { uid: number; gid: number };
  overrides: { command?: string[]; env?: Record<string, string>; limits?: AgentLimits };
  sharedDir: string;
  /** The session's own checkout (write sessions), instead of the project directory. */
  checkout?: { dir: string; gitObjects: string } | null;
}

export function resolveSpec(i: SpecInput): SessionSpec {
  const limits = { ...i.agent.limits, ...i.overrides.limits };
  return {
    image: i.image,
    command: i.overrides.command ?? i.agent.command,
    env: { ...i.agent.env, ...i.overrides.env },
    secrets: { ...i.agent.secrets },
    workspace: { source: i.checkout?.dir ?? i.project.path, readOnly: i.mode === 'read' },
    gitObjects: i.checkout?.gitObjects ?? null,
    shared: i.sharedDir,
    user: `${i.owner.uid}:${i.owner.gid}`,
    memoryBytes: parseMemory(limits.memory ?? i.config.agentMemoryLimit)!,
    nanoCpus: Math.round((limits.cpus ?? i.config.agentCpuLimit) * 1e9),
    pidsLimit: limits.pids ?? i.config.agentPidsLimit,
    network: i.agent.network ?? i.project.network ?? 'bridge',
    readOnlyRootfs: i.agent.readOnlyRootfs,
    capAdd: [...i.agent.capAdd].sort(),
    runtime: i.config.agentRuntime,
    dockerSocket: i.config.agentDockerAccess === 'socket',
    overrides: i.overrides,
  };
}

function stable(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(stable);
  if (v && typeof v === 'object') {
    return Object.fromEntries(
      Object.keys(v as object)
        .sort()
        .map((k) => [k, stable((v as Record<string, unknown>)[k])]),
    );
  }
  return v;
}

/** Short content hash of a spec, carried by the container as `dev.berth.spec-hash`. */
export function specHash(spec: SessionSpec): string {
  return createHash('sha256').update(JSON.stringify(stable(spec))).digest('hex').slice(0, 16);
}

export interface ContainerIdentity {
  sessionId: string;
  project: string;
  agent: string;
  containerName: string;
  specHash: string;
  instanceId: string;
}

/** The engine-level container for a session. `secretValues` are resolved by the caller at create time. */
export function toContainerSpec(
  spec: SessionSpec,
  id: ContainerIdentity,
  secretValues: Record<string, string>,
  engineSocket: { path: string; gid: number | null } | null,
  /** The session's Claude bridge directory on the host (mounted read-only at /host), if it has one. */
  bridgeDir: string | null = null,
  /** What the engine's own log of the container keeps (config `logEngineBytes`), in two files. */
  engineLogBytes = 128 * 1024 * 1024,
): ContainerSpec {
  const mounts: ContainerSpec['mounts'] = [
    { kind: 'bind', source: spec.workspace.source, target: '/workspace', readOnly: spec.workspace.readOnly },
    ...(spec.gitObjects ? [{ kind: 'bind' as const, source: spec.gitObjects, target: spec.gitObjects, readOnly: true }] : []),
    { kind: 'bind', source: spec.shared, target: '/shared', readOnly: true },
    { kind: 'volume', source: agentVolumeName(id.sessionId), target: '/agent', readOnly: false },
  ];
  if (bridgeDir) mounts.push({ kind: 'bind', source: bridgeDir, target: BRIDGE_DIR_IN_CONTAINER, readOnly: true });
  const groupAdd: string[] = [];
  if (spec.dockerSocket && engineSocket) {
    mounts.push({ kind: 'bind', source: engineSocket.path, target: '/var/run/docker.sock', readOnly: false });
    if (engineSocket.gid !== null) groupAdd.push(String(engineSocket.gid));
  }
  return {
    name: id.containerName,
    image: spec.image,
    command: spec.command,
    env: {
      ...spec.env,
      ...secretValues,
      BERTH_SESSION: id.sessionId,
      BERTH_PROJECT: id.project,
      BERTH_AGENT: id.agent,
      HOME: '/agent',
      // nproc and /proc/meminfo show the host's: an agent sizing its work (parallel test runners,
      // build jobs) reads its real limits here.
      BERTH_CPUS: String(spec.nanoCpus / 1e9),
      BERTH_MEMORY_BYTES: String(spec.memoryBytes),
      BERTH_PIDS_LIMIT: String(spec.pidsLimit),
      ...(bridgeDir ? { [BRIDGE_SOCKET_ENV]: BRIDGE_SOCKET_IN_CONTAINER } : {}),
    },
    labels: {
      [LABELS.managed]: 'true',
      [LABELS.instance]: id.instanceId,
      [LABELS.session]: id.sessionId,
      [LABELS.project]: id.project,
      [LABELS.agent]: id.agent,
      [LABELS.specHash]: id.specHash,
    },
    user: spec.user,
    workdir: '/workspace',
    mounts,
    memoryBytes: spec.memoryBytes,
    nanoCpus: spec.nanoCpus,
    pidsLimit: spec.pidsLimit,
    network: spec.network,
    networkName: spec.network === 'none' ? null : networkName(id.project, spec.network === 'internal', id.instanceId),
    security: {
      privileged: false,
      capDrop: ['ALL'],
      capAdd: spec.capAdd,
      noNewPrivileges: true,
      init: true,
      readOnlyRootfs: spec.readOnlyRootfs,
      tmpfs: spec.readOnlyRootfs ? { '/tmp': 'rw,nosuid,nodev,size=512m' } : {},
      // A buffer between the agent and berthd's own store (logs/). The engine reads a log back
      // several times slower than it writes it (20.10: 43k vs 150k lines/s), and a reader more than
      // one file behind when the engine rotates loses that file, so a file must hold the backlog of
      // a burst (1M short lines ≈ 75 MB of json-file). What rotates out while berthd is down is
      // marked as lost in the store.
      logs: { maxSize: `${Math.max(1024, Math.floor(engineLogBytes / 2 / 1024))}k`, maxFiles: 2 },
    },
    runtime: spec.runtime,
    groupAdd,
  };
}
