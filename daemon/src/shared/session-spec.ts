import type { AgentLimits, NetworkMode } from '@berth/client-sdk/protocol';

/**
 * What a session's container must look like, resolved once (sessions/spec.ts resolveSpec) from the
 * agent profile, the project, the daemon's configuration and the call's overrides, then frozen in
 * the session row. The store keeps it as data; only sessions/ builds or interprets it.
 * Secrets appear by reference only.
 */
export interface SessionSpec {
  image: string;
  command: string[];
  env: Record<string, string>;
  /** env name → secret name. */
  secrets: Record<string, string>;
  workspace: { source: string; readOnly: boolean };
  /** The project's object store, mounted read-only at the same path so the checkout's alternates resolve. */
  gitObjects?: string | null;
  shared: string;
  /** uid:gid of the project's owner. */
  user: string;
  memoryBytes: number;
  nanoCpus: number;
  pidsLimit: number;
  network: NetworkMode;
  readOnlyRootfs: boolean;
  capAdd: string[];
  runtime: string | null;
  dockerSocket: boolean;
  /** What the start call overrode, kept so a restart re-resolves the profile with the same overrides. */
  overrides: { command?: string[]; env?: Record<string, string>; limits?: AgentLimits };
}
