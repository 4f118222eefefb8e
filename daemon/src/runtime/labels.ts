/**
 * Labels on everything berth creates in the engine. Ownership is always found by listing by these,
 * never remembered: a container belongs to a session because its labels say so.
 */
export const LABELS = {
  managed: 'dev.berth.managed',
  /** The berthd that owns it (a random id kept in its database), so daemons sharing an engine keep apart. */
  instance: 'dev.berth.instance',
  session: 'dev.berth.session',
  project: 'dev.berth.project',
  agent: 'dev.berth.agent',
  specHash: 'dev.berth.spec-hash',
  /** On networks: `bridge` or `internal`, what berth made it as (the engine's Internal flag must agree). */
  network: 'dev.berth.network',
} as const;

/**
 * A session's container is named after the session (`berth-look` for `--name look`; the default
 * session name `web-3` gives `berth-web-3`). `taken` is true when an older row holds that name (rows
 * from before this rule were named `berth-<project>-<seq>`): then the project's sequence number
 * is added, which no other session of this berthd has.
 */
export const containerName = (session: string, seq: number, taken = false) => (taken ? `berth-${session}-${seq}` : `berth-${session}`);
/**
 * The per-project network of one berthd. Bridge and internal networks have prefixes that differ
 * before anything variable starts, so no project name (NAME_PATTERN) can make one kind's name equal
 * to the other's: with a suffix (`berth-net-x-internal`), project `x`'s internal network was project
 * `x-internal`'s bridge. The daemon's instance id (fixed-length hex) comes next, so two berthds on one
 * engine, or a network left by an earlier installation, never share or block a name.
 */
export const networkName = (project: string, internal: boolean, instanceId: string) => `${internal ? 'berth-internal-' : 'berth-net-'}${instanceId}-${project}`;
/** The labels a project network is made with and must carry to be adopted (ensureNetwork). */
export const networkLabels = (instanceId: string, project: string, internal: boolean): Record<string, string> => ({
  [LABELS.managed]: 'true',
  [LABELS.instance]: instanceId,
  [LABELS.project]: project,
  [LABELS.network]: internal ? 'internal' : 'bridge',
});
export const agentVolumeName = (sessionId: string) => `berth-agent-${sessionId}`;

/** The engine's label filter for containers carrying every one of `labels`. */
export const labelFilter = (labels: Record<string, string>): string[] => Object.entries(labels).map(([k, v]) => `${k}=${v}`);
